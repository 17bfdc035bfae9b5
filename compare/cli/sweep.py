"""``covsde sweep CONFIG.toml --out STORE [--workers N | --scheduler ADDRESS] [--resume]``.

Calls :mod:`compare.sweep` and nothing else. A bad config, a non-empty STORE without
``--resume`` or a STORE from another config raise :class:`sde.errors.CovsdeInputError`
(one line naming the key, exit code 2) before anything is written; a cell that fails on a
worker is one line and exit code 1 (finished cells stay; rerun with ``--resume``).
"""
import sys

from sde.errors import CovsdeInputError


def add_sweep(sub):
    p = sub.add_parser(
        "sweep", help="run a grid of SDE / finite-network cells on Dask (resumable)",
        description="Run every cell of a grid (d/n × width × any list-valued model or initial "
                    "parameter) on dask.distributed: per cell the SDE, optionally its ODE and "
                    "the finite network, compared at t = d/n. Each cell is one compressed "
                    "netCDF under STORE/cells, written atomically and recorded with its "
                    "sha256 in STORE/manifest.json; seeds derive from the root seed and the "
                    "cell's parameter values only. Read the results with "
                    "compare.sweep.open_sweep(STORE); draw them with covsde figures --sweep "
                    "STORE. covsde sweep --example prints a commented config.")
    p.add_argument("config", nargs="?", help="the sweep config (TOML)")
    p.add_argument("--out", help="STORE directory (created with its parents)")
    p.add_argument("--example", action="store_true", help="print a commented example config "
                                                          "and exit")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="processes of the local Dask cluster (default: "
                                               "the machine's cores; numba threads per worker "
                                               "= cores / workers)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler "
                                       "(tcp://HOST:PORT) to use instead of a local cluster")
    p.add_argument("--resume", action="store_true",
                   help="continue STORE: skip finished cells, recompute missing, partial or "
                        "corrupt ones (never rewrites a finished one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args):
    from ..sweep import EXAMPLE_CONFIG, SweepError, load_config, run_sweep
    from .defaults import WARN_N_BOOT

    if args.example:
        if args.config or args.out:
            raise CovsdeInputError("--example takes no config or --out")
        sys.stdout.write(EXAMPLE_CONFIG)
        return 0
    if not args.config:
        raise CovsdeInputError("give a CONFIG.toml (covsde sweep --example prints one)")
    if not args.out:
        raise CovsdeInputError("--out STORE is required")
    if args.workers is not None and args.workers < 1:
        raise CovsdeInputError(f"--workers must be an integer >= 1, got {args.workers}")
    config = load_config(args.config)
    n_boot = config.get("compare", {}).get("n_boot")
    if n_boot is not None and n_boot < WARN_N_BOOT:  # as covsde compare warns
        sys.stderr.write(f"warning: compare.n_boot = {n_boot}: interval end points and "
                         f"permutation p-values vary between seeds (use >= {WARN_N_BOOT})\n")
        sys.stderr.flush()
    try:
        run_sweep(config, args.out, workers=args.workers, scheduler=args.scheduler,
                  resume=args.resume, progress=not args.no_progress,
                  log=lambda line: print(line, flush=True))
    except SweepError as exc:
        sys.stderr.write(f"covsde sweep: error: {exc}; finished cells are kept, rerun with "
                         f"--resume\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("covsde sweep: interrupted; finished cells are kept, rerun with "
                         "--resume\n")
        return 130
    return 0
