"""``covsde figures [--quick] --out DIR [--seed S] [--only NAME]``: regenerate the figure
gallery (docs/theory.md §7, rank collapse, masks) from datasets saved under ``DIR/data``.

Figures already in ``DIR`` are refused unless ``--force`` (the saved datasets are reused
either way, when their parameters match); with ``--sweep``, any ``convergence_*.png`` or
``stability_*.png`` already in ``DIR``."""
import argparse
import os
import time

from sde.errors import CovsdeInputError

from ..figures.gallery_sizes import FIGURES, OUTPUTS, SIZES
from .outputs import add_force, check_out_dir


def add_figures(sub):
    p = sub.add_parser(
        "figures",
        help="regenerate the paper-style figures (docs/theory.md §7) from saved datasets",
        description="Regenerate the docs/theory.md §7 figures the shaped architectures allow: "
                    "distribution of ρ_01 and V_00 at d/n ∈ {0.25, 0.5, 1, 2} (finite reduced "
                    "network vs SDE vs ODE), ρ trajectories, convergence of finite networks to "
                    "the SDE with width (arch=mlp, KS/W1 vs n, permutation noise floor, slope "
                    "fitted on all widths with a bootstrap standard error, n^-1/2 reference), "
                    "and the stability map of the attention SDE over (γ, τ0): its blow-up "
                    "probability P(τ ≤ 1) converged in dt (SPD scheme) with Clopper–Pearson "
                    "intervals and the dt reached (CSV table). The convergence grid and the "
                    "stability map run as covsde sweeps in this process (STOREs under DIR/data, "
                    "resumed). Datasets are saved under DIR/data and simulated "
                    "only when missing or when their parameters differ; re-plotting never "
                    "resimulates. Each figure is written as PNG and PDF; captions in "
                    "DIR/captions.md. Also: rank collapse of unshaped Transformers "
                    "(rank_collapse, masks_layernorm, similarity_removal, espa_kernel) and "
                    "causal vs complete masks (masked_positions: ρ_0j and V_jj by token "
                    "position; masked_stability: blow-up probability converged in dt over "
                    "(γ, τ0) per mask, with its CSV).")
    p.add_argument("--sweep", metavar="STORE",
                   help="draw the convergence figure / stability map of a covsde sweep STORE "
                        "instead of the gallery")
    p.add_argument("--out", required=True, help="output directory (created; its parent must "
                                                "exist)")
    p.add_argument("--quick", action="store_true",
                   help="small path counts, fewer widths and grid points (< ~3 min on 2 cores)")
    p.add_argument("--seed", type=int, default=0, help="seed >= 0 (default %(default)s)")
    p.add_argument("--only", action="append", choices=FIGURES,
                   help="draw only this figure (repeatable; default: all)")
    # test-only sizes (tiny) are reachable but not advertised
    p.add_argument("--size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    add_force(p)
    p.set_defaults(func=cmd_figures)


def cmd_figures(args):
    from sde.simulate import as_int

    if args.sweep:
        from ..figures.sweep import SWEEP_FIGURE_PREFIXES, figures_from_sweep

        present = (sorted(f for f in os.listdir(args.out)
                          if f.startswith(SWEEP_FIGURE_PREFIXES) and f.endswith(".png"))
                   if os.path.isdir(args.out) else [])
        check_out_dir(args.out, "--out", args.force, present)
        written = figures_from_sweep(args.sweep, args.out,
                                     log=lambda line: print(line, flush=True))
        print(f"wrote {len(written)} figures under {args.out}")
        return 0
    as_int("--seed", args.seed, 0)
    size = args.size or ("quick" if args.quick else "full")
    if args.size and args.quick and args.size != "quick":
        raise CovsdeInputError("give --quick or --size, not both")
    from ..figures.gallery import check_out_dir as check_gallery_dir
    from ..figures.gallery import make_figures

    check_gallery_dir(args.out)
    names = [f for name in (args.only or FIGURES) for f in OUTPUTS[name]]
    check_out_dir(args.out, "--out", args.force, names)
    t0 = time.perf_counter()
    print(f"covsde figures: {size} size, seed {args.seed}, output {args.out}", flush=True)
    written = make_figures(args.out, size=size, seed=args.seed, only=args.only,
                           log=lambda line: print(line, flush=True))
    print(f"wrote {len(written)} files under {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
