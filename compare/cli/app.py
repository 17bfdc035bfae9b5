"""The ``covsde`` console script: subcommands that call the public functions and nothing else.

Bad input prints one line ``covsde <cmd>: error: …`` on stderr and exits with code 2;
no output file is left behind. Ctrl-C prints one line and exits with code 130.
"""
import os
import signal
import sys
import time


def _interrupted_while_starting(signum, frame):  # pragma: no cover (timing-dependent)
    """Ctrl-C during the imports below (seconds on a loaded machine): one line, exit 130."""
    sys.stderr.write("covsde: interrupted (no output written)\n")
    os._exit(130)


try:
    _SIGINT_BEFORE = signal.signal(signal.SIGINT, _interrupted_while_starting)
except ValueError:  # imported outside the main thread: no signal handling to change
    _SIGINT_BEFORE = None

from sde.errors import CovsdeInputError
from sde.io import check_output_path, check_writable_dir, write_dataset
from sde.schema import summary_line
from sde.simulate import DEFAULT_BOUND, METHODS, as_int, simulate

from .blowup import add_blowup
from .compare import add_compare
from .finite import add_finite
from .figures import add_figures
from .sweep import add_sweep
from .args import (Parser, add_model_args, add_run_args, add_v0_args, check_tokens_memory,
                       memory_limit_bytes, model_from_args, set_threads, v0_from_args)

if _SIGINT_BEFORE is not None:  # imports done: Ctrl-C raises KeyboardInterrupt again
    signal.signal(signal.SIGINT, _SIGINT_BEFORE)


def _add_simulate(sub):
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
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args):
    model = model_from_args(args)
    if args.method not in METHODS:
        raise CovsdeInputError(f"--method must be one of {', '.join(METHODS)}, "
                               f"got {args.method!r}")
    if args.paths is None:
        if args.method != "ode":
            raise CovsdeInputError(f"--paths is required for --method {args.method}")
        args.paths = 1
    as_int("--paths", args.paths, 1)
    memory_limit = memory_limit_bytes(args)
    check_tokens_memory(args, 1 if args.method == "ode" else args.paths, memory_limit)
    V0 = v0_from_args(args)
    check_output_path(args.out, "--out")
    set_threads(args.threads)
    t0 = time.perf_counter()
    ds = simulate(model, V0, t_end=args.t_end, dt=args.dt, n_paths=args.paths, seed=args.seed,
                  save_every=args.save_every, method=args.method, bound=args.bound,
                  memory_limit=memory_limit, progress=None)
    ds.attrs["threads"] = args.threads or 0
    write_dataset(ds, args.out)
    note = " (ode: one deterministic path, --paths ignored)" if args.method == "ode" else ""
    print(f"{summary_line(ds)}{note}; {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="the main job: finite networks vs SDE vs ODE across d/n",
                       description="The default shaped block (m = 3, ρ0 = 0.2, γ = 1/sqrt 8, "
                                   "τ0 = 1, c₊ = 0, c₋ = −1) as an SDE and its ODE (dt = 0.01, "
                                   "10⁴ paths) and as reduced finite networks (n = 200, 2000 "
                                   "paths), compared at d/n ∈ {0.25, 0.5, 0.75, 1}: datasets, "
                                   "an overlay figure per ratio, a trajectories figure and a "
                                   "distance table (KS, W1, noise floors, W1 to the ODE), "
                                   "all under --out. About 1–2 min on 2 cores.")
    p.add_argument("--out", default="runs/demo", help="output directory (created, with its "
                                                      "parents; default %(default)s)")
    p.add_argument("--paths", type=int, default=10_000, help="SDE paths (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed >= 0 (default %(default)s)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args):
    from ..demo import run_demo

    as_int("--paths", args.paths, 1)
    as_int("--seed", args.seed, 0)
    # --out and any missing parents are created; the nearest existing one must be a directory
    existing = os.path.abspath(args.out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CovsdeInputError(f"--out: {existing} exists and is not a directory")
    check_writable_dir(existing, "--out")

    for line in run_demo(args.out, n_paths=args.paths, seed=args.seed):
        print(line)
    return 0


def build_parser():
    p = Parser(prog="covsde", description="Covariance SDEs of shaped Transformers and the "
                                          "finite networks they describe.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_simulate(sub)
    _add_demo(sub)
    add_compare(sub)
    add_finite(sub)
    add_figures(sub)
    add_sweep(sub)
    add_blowup(sub)
    return p


def main(argv=None):
    """Run one subcommand. Bad input: one line on stderr, exit 2. Ctrl-C: one line
    ``covsde <cmd>: interrupted``, exit 130 (128 + SIGINT); outputs are written atomically
    (temporary name, then rename), so an interrupted run leaves no partial file."""
    import matplotlib

    matplotlib.use("Agg")  # the CLI only writes files; library code never switches backends
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CovsdeInputError as exc:
        sys.stderr.write(f"covsde {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"covsde {args.command}: interrupted (no partial output written)\n")
        return 130
    except BrokenPipeError:  # e.g. `covsde compare ... | head`: stop quietly
        sys.stderr = open(os.devnull, "w")
        return 0
    except OSError as exc:  # the environment refused (disk full, permissions, ...)
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"covsde {args.command}: error: {exc.strerror or exc}{where}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
