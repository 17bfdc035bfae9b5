"""``covsde blowup``: the blow-up probability P(τ ≤ T), converged in dt (sde.blowup).

Calls :func:`sde.blowup.blowup_probability` and prints the converged value, the dt that
achieved it and the table of the sequence, or a clear *not converged* status (exit 0: it is
a result, not an error). ``--json`` prints one JSON object instead. Bad input raises
:class:`sde.errors.CovsdeInputError` (one line, exit 2).
"""
import json
import math

from sde.blowup import (BLOWUP_METHODS, DEFAULT_MAX_HALVINGS, DEFAULT_STABLE_PAIRS,
                        blowup_probability)
from sde.errors import CovsdeInputError
from sde.simulate import DEFAULT_BOUND, as_int

from .args import add_model_args, add_v0_args, model_from_args, set_threads, v0_from_args


def add_blowup(sub):
    p = sub.add_parser(
        "blowup", help="blow-up probability P(tau <= T) with an interval, converged in dt",
        description="Estimate P(τ ≤ T), τ the time a path of the covariance SDE blows up "
                    "(|V_ab| > --bound or non-finite; with --method euler also a PD-cone "
                    "exit), with a Clopper–Pearson 95 %% interval, halving dt from --dt until "
                    "the last --stable-pairs + 1 estimates' intervals overlap pairwise "
                    "(docs/theory.md §4.4, §4.7). "
                    "Prints the converged value, its dt and the sequence, or 'not converged' "
                    "(exit 0).")
    add_model_args(p)
    add_v0_args(p)
    g = p.add_argument_group("estimate")
    g.add_argument("--t-end", type=float, required=True, help="terminal time T > 0, a whole "
                                                              "number of --dt steps")
    g.add_argument("--dt", type=float, required=True, help="first (coarsest) step, 0 < dt <= T")
    g.add_argument("--paths", type=int, required=True, help="paths per step size, >= 1")
    g.add_argument("--method", default="spd", help=f"one of {', '.join(BLOWUP_METHODS)} "
                                                   f"(default %(default)s)")
    g.add_argument("--max-halvings", type=int, default=DEFAULT_MAX_HALVINGS,
                   help="at most this many halvings of dt (default %(default)s)")
    g.add_argument("--stable-pairs", type=int, default=DEFAULT_STABLE_PAIRS,
                   help="converged when the last STABLE_PAIRS + 1 estimates (dt, dt/2, …) "
                        "have pairwise overlapping intervals (default %(default)s)")
    g.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                   help="|V_ab| above this (or non-finite) is a blow-up (default %(default)g)")
    g.add_argument("--seed", type=int, required=True, help="integer seed >= 0")
    g.add_argument("--threads", type=int, help="numba threads (default: all cores); results "
                                               "do not depend on it")
    g.add_argument("--json", action="store_true", help="print one JSON object (probability, "
                                                       "ci_low, ci_high, dt, converged, "
                                                       "sequence, provenance)")
    p.set_defaults(func=_cmd_blowup)


def _positive(flag, value):
    if not (math.isfinite(value) and value > 0):
        raise CovsdeInputError(f"{flag} must be a finite number > 0, got {value!r}")


def _cmd_blowup(args):
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
    as_int("--stable-pairs", args.stable_pairs, 1)
    if args.stable_pairs > args.max_halvings:
        raise CovsdeInputError(f"--stable-pairs must be at most --max-halvings = "
                               f"{args.max_halvings}, got {args.stable_pairs}")
    V0 = v0_from_args(args)
    set_threads(args.threads)
    r = blowup_probability(model, V0, t_end=args.t_end, dt0=args.dt, n_paths=args.paths,
                           seed=args.seed, method=args.method, max_halvings=args.max_halvings,
                           bound=args.bound, stable_pairs=args.stable_pairs,
                           progress=not args.json)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    state = "converged" if r.converged else "NOT CONVERGED"
    print(f"blow-up P(tau <= {args.t_end:g}) arch={model.arch} method={args.method}: {state}; "
          f"{r.probability:.4f} (95 % CI {r.ci_low:.4f}–{r.ci_high:.4f}) at dt = {r.dt:.4g}")
    for line in r.table():
        print(line)
    if not r.converged:
        print(f"not converged: the last {args.stable_pairs + 1} estimates never agreed "
              f"pairwise within {args.max_halvings} halvings; the last value depends on dt")
    return 0
