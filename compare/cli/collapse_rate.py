"""``covsde collapse-rate``: the per-layer collapse rate of a finite dataset over a window
(:mod:`compare.collapse_rate`), with an interval; ``--json`` prints one object."""
import json

from sde.errors import CovsdeInputError

from .defaults import COLLAPSE_RATE_STATS as STATS


def add_collapse_rate(sub):
    p = sub.add_parser(
        "collapse-rate", help="per-layer collapse rate over a window of depths, with an interval",
        description="Fit log μ(X)/‖X‖_F (or log(−log μ), or log(1 − token similarity)) per "
                    "path by least squares over a window of depths; print the mean slope "
                    "(per layer) with a Student-t interval over paths, the slopes of the "
                    "window's halves (a rate still changing is not asymptotic), and for a "
                    "masked attention-only run the asymptotic rate log|λ2(C)| of its mask "
                    "(docs/theory.md §2.4d). Default window: the run's second half.")
    p.add_argument("data", help="a finite-network dataset (.nc) from covsde finite")
    p.add_argument("--stat", default="log-consensus",
                   help=f"one of {', '.join(STATS)} (default %(default)s)")
    p.add_argument("--window", nargs=2, type=int, metavar=("D0", "D1"),
                   help="first and last depth of the fit (default: the second half, "
                        "ceil(D/2) .. D)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default "
                                                             "%(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_collapse_rate)


def _cmd_collapse_rate(args):
    from sde.io import read_dataset

    from ..collapse_rate import collapse_rate, mask_asymptotic_rate

    ds = read_dataset(args.data)
    out = collapse_rate(ds, args.stat, args.window, args.level)
    M = ds.attrs.get("mask_matrix")
    if M is not None and ds.attrs.get("arch") == "attention-only":
        try:
            out["mask_asymptotic_rate"] = mask_asymptotic_rate(json.loads(M))
        except (TypeError, ValueError):
            raise CovsdeInputError("mask_matrix attribute is not a JSON matrix") from None
    if args.json:
        print(json.dumps(out))
        return 0
    lvl = round(100 * out["level"])
    print(f"{out['stat']} per layer over depths {out['window'][0]}..{out['window'][1]} "
          f"({out['depths_used']} saved depths, {out['n_paths']} paths): "
          f"{out['rate']:.4g}  [{lvl} % CI {out['low']:.4g}, {out['high']:.4g}]")
    print(f"  first half {out['rate_first_half']:.4g}, second half "
          f"{out['rate_second_half']:.4g} (change z = {out['change_z']:.3g})"
          + (f"; {out['note']}" if out["note"] else ""))
    if "mask_asymptotic_rate" in out:
        print(f"  the mask's asymptotic rate log|lambda2(C)| = {out['mask_asymptotic_rate']:.4g}")
    return 0
