"""``covsde simulate``: integrate a covariance SDE (or its ODE) and write a netCDF dataset.

Calls :func:`sde.simulate` and nothing else; bad input raises
:class:`sde.errors.CovsdeInputError`, which ``covsde``'s ``main`` turns into one line on
stderr and exit code 2 (no output file is written).
"""
import time

from sde.errors import CovsdeInputError

from .args import (add_model_args, add_run_args, add_v0_args, check_tokens_memory,
                   memory_limit_bytes, model_from_args, set_threads, v0_from_args)
from .defaults import DEFAULT_BOUND
from .defaults import SIMULATE_METHODS as METHODS
from .outputs import DATASET_EXTENSIONS, check_new_file


def add_simulate(sub):
    p = sub.add_parser(
        "simulate", help="integrate a covariance SDE (or its ODE) and write a netCDF dataset",
        description="Integrate the covariance SDE dV = b(V) dt + dM of a shaped architecture "
                    "(docs/theory.md §3) by Euler–Maruyama (or the SPD-preserving step, --method spd, "
                    "docs/theory.md §4.7) over many paths, or its drift-only ODE "
                    "(--method ode, classical RK4), and write V(path, time, token_a, token_b) "
                    "with status, death times and all parameters to a netCDF file. "
                    "Time t = depth/width. The first call compiles the kernels (seconds).")
    add_model_args(p)
    add_v0_args(p)
    g = p.add_argument_group("integration")
    g.add_argument("--t-end", type=float, required=True, help="terminal time T = d/n > 0, a "
                                                              "whole number of --dt steps")
    g.add_argument("--dt", type=float, required=True, help="step size, 0 < dt <= T")
    g.add_argument("--paths", type=int, default=None, help="number of paths >= 1 "
                                                           "(required for euler and spd; ode "
                                                           "uses one)")
    g.add_argument("--save-every", type=int, help="save every K-th step (default: <= ~100 "
                                                  "saved times; first and last always saved)")
    g.add_argument("--method", default="euler", help=f"one of {', '.join(METHODS)}")
    g.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                   help="|V_ab| above this (or non-finite) marks a path as blown up "
                        "(default %(default)g)")
    add_run_args(g, "numba threads")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args):
    from sde.io import write_dataset
    from sde.schema import summary_line
    from sde.simulate import as_int, simulate

    model = model_from_args(args)
    if args.method not in METHODS:
        raise CovsdeInputError(f"--method must be one of {', '.join(METHODS)}, "
                               f"got {args.method!r}")
    paths_given = args.paths is not None
    if not paths_given:
        if args.method != "ode":
            raise CovsdeInputError(f"--paths is required for --method {args.method}")
        args.paths = 1
    as_int("--paths", args.paths, 1)
    memory_limit = memory_limit_bytes(args)
    check_tokens_memory(args, 1 if args.method == "ode" else args.paths, memory_limit)
    V0 = v0_from_args(args)
    check_new_file(args.out, "--out", args.force, DATASET_EXTENSIONS)
    set_threads(args.threads)
    t0 = time.perf_counter()
    ds = simulate(model, V0, t_end=args.t_end, dt=args.dt, n_paths=args.paths, seed=args.seed,
                  save_every=args.save_every, method=args.method, bound=args.bound,
                  memory_limit=memory_limit, progress=None)
    ds.attrs["threads"] = args.threads or 0
    write_dataset(ds, args.out)
    note = ""
    if args.method == "ode":
        note = " (ode: one deterministic path" + (", --paths ignored)" if paths_given else ")")
    print(f"{summary_line(ds)}{note}; {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0
