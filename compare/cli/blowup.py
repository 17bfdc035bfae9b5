"""``covsde blowup``: the blow-up probability P(τ ≤ T), converged in dt (sde.blowup).

Calls :func:`sde.blowup.blowup_probability` and prints the converged value, the dt that
achieved it and the table of the sequence (with the paired interval of each halving's
change), or a clear *not converged* status saying why (exit 0: it is a result, not an
error). ``--json`` prints one JSON object instead. Bad input raises
:class:`sde.errors.CovsdeInputError` (one line, exit 2).
"""
import json
import math

from sde.errors import CovsdeInputError

from .args import add_model_args, add_v0_args, model_from_args, set_threads, v0_from_args
from .defaults import (BLOWUP_METHODS, DEFAULT_ATOL, DEFAULT_BOUND, DEFAULT_MAX_HALVINGS,
                       DEFAULT_RTOL)


def add_blowup(sub):
    p = sub.add_parser(
        "blowup", help="blow-up probability P(tau <= T) with an interval, converged in dt",
        description="Estimate P(τ ≤ T), τ the time a path of the covariance SDE blows up "
                    "(|V_ab| > --bound or non-finite; with --method euler also a PD-cone "
                    "exit), with a Clopper–Pearson 95 %% interval, halving dt from --dt on "
                    "coupled runs (one Brownian path; the coarse increment is the sum of the "
                    "fine ones) until the paired 95 %% interval of P(2 dt) − P(dt) lies inside "
                    "±max(--atol, --rtol · P(dt)) (docs/theory.md §4.4, §4.7, §4.8). "
                    "Prints the converged value, its dt and the sequence, or 'not converged' "
                    "and why (exit 0).")
    add_model_args(p)
    add_v0_args(p)
    g = p.add_argument_group("estimate")
    g.add_argument("--t-end", type=float, required=True, help="terminal time T > 0, a whole "
                                                              "number of --dt steps")
    g.add_argument("--dt", type=float, required=True, help="first (coarsest) step, 0 < dt <= T")
    g.add_argument("--paths", type=int, required=True,
                   help="paths, >= 1 (the same Brownian paths at every step size)")
    g.add_argument("--method", default="spd", help=f"one of {', '.join(BLOWUP_METHODS)} "
                                                   f"(default %(default)s)")
    g.add_argument("--max-halvings", type=int, default=DEFAULT_MAX_HALVINGS,
                   help="at most this many halvings of dt (default %(default)s)")
    g.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help="relative tolerance on the bias left at dt, (P(2 dt) - P(dt)) / "
                        "(2^0.5 - 1) for a scheme of weak order 1/2, a fraction of P(dt); "
                        "it must hold at 2 halvings in a row (default %(default)g)")
    g.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help="absolute tolerance on the bias left at dt; the tolerance is "
                        "max(ATOL, RTOL * P(dt)) (default %(default)g)")
    g.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                   help="|V_ab| above this (or non-finite) is a blow-up (default %(default)g)")
    g.add_argument("--seed", type=int, required=True, help="integer seed >= 0")
    g.add_argument("--threads", type=int, help="numba threads (default: all cores); results "
                                               "do not depend on it")
    g.add_argument("--json", action="store_true", help="print one JSON object (probability, "
                                                       "ci_low, ci_high, dt, converged, "
                                                       "status, limit_ci, sequence with "
                                                       "difference and difference_ci, "
                                                       "provenance)")
    p.set_defaults(func=_cmd_blowup)


def _positive(flag, value):
    if not (math.isfinite(value) and value > 0):
        raise CovsdeInputError(f"{flag} must be a finite number > 0, got {value!r}")


def _cmd_blowup(args):
    from sde.blowup import CONVERGED, MORE_PATHS, UNCONFIRMED, bias_factor, blowup_probability
    from sde.simulate import as_int

    model = model_from_args(args)
    if args.method not in BLOWUP_METHODS:
        raise CovsdeInputError(f"--method must be one of {', '.join(BLOWUP_METHODS)}, "
                               f"got {args.method!r}")
    _positive("--t-end", args.t_end)
    _positive("--dt", args.dt)
    _positive("--bound", args.bound)
    if args.dt > args.t_end:
        raise CovsdeInputError(f"--dt must be <= --t-end, got {args.dt!r} > {args.t_end!r}")
    n = args.t_end / args.dt
    if abs(round(n) - n) > 1e-9 * n:
        raise CovsdeInputError(f"--t-end must be a whole number of --dt steps, got "
                               f"--t-end/--dt = {n!r}")
    as_int("--paths", args.paths, 1)
    as_int("--seed", args.seed, 0)
    as_int("--max-halvings", args.max_halvings, 1)
    if args.max_halvings > 20:
        raise CovsdeInputError(f"--max-halvings must be at most 20, got {args.max_halvings}")
    for flag, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if not (math.isfinite(value) and value >= 0):
            raise CovsdeInputError(f"{flag} must be a finite number >= 0, got {value!r}")
    if args.rtol == 0 and args.atol == 0:
        raise CovsdeInputError("--atol and --rtol must not both be 0")
    V0 = v0_from_args(args)
    set_threads(args.threads)
    r = blowup_probability(model, V0, t_end=args.t_end, dt0=args.dt, n_paths=args.paths,
                           seed=args.seed, method=args.method, max_halvings=args.max_halvings,
                           bound=args.bound, rtol=args.rtol, atol=args.atol,
                           progress=not args.json)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    state = "converged" if r.converged else "NOT CONVERGED"
    print(f"blow-up P(tau <= {args.t_end:g}) arch={model.arch} method={args.method}: {state}; "
          f"{r.probability:.4f} (95 % CI {r.ci_low:.4f}–{r.ci_high:.4f}) at dt = {r.dt:.4g}")
    for line in r.table():
        print(line)
    last = r.sequence[-1]
    if r.status == CONVERGED:
        lo, hi = last["bias_ci"]
        llo, lhi = r.limit_ci
        print(f"converged: the bias left at dt, (P(2 dt) - P(dt)) x {bias_factor(r.attrs['order']):.3g} "
              f"(weak order {r.attrs['order']:g}), in [{lo:+.4f}, {hi:+.4f}], inside the "
              f"tolerance +-{last['tolerance']:.4f} at {r.attrs['confirm']} halving(s) in a "
              f"row; the dt -> 0 limit is in [{llo:.4f}, {lhi:.4f}]")
    elif r.status == MORE_PATHS:
        print(f"{MORE_PATHS}: the bias interval (P(2 dt) - P(dt) x "
              f"{bias_factor(r.attrs['order']):.3g}) cannot be narrower than the tolerance "
              f"+-{last['tolerance']:.4f} at {args.paths} paths"
              + (f" (about {r.paths_needed} paths at least)" if r.paths_needed else ""))
    elif r.status == UNCONFIRMED:
        print(f"{r.status}: give --max-halvings {args.max_halvings + 1} or more")
    else:
        lo, hi = last["bias_ci"]
        print(f"{r.status}: after {args.max_halvings} halvings the bias left at dt is still "
              f"in [{lo:+.4f}, {hi:+.4f}], outside +-{last['tolerance']:.4f}; the last value "
              f"depends on dt (a smaller --dt or more --max-halvings)")
    return 0
