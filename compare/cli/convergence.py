"""``covsde convergence``: weak errors of finite networks against their SDE, and the rate.

Calls :func:`compare.convergence.convergence_study`; prints one block per (functional, time)
or, with ``--json``, one JSON object. Bad input: one line, exit 2, no output file.
"""
import json
import math

from sde.errors import CovsdeInputError

from .args import add_model_args, add_v0_args, model_from_args, set_threads, v0_from_args
from .defaults import DEFAULT_BOUND, DEFAULT_FUNCTIONALS, SCHEMES
from .outputs import FIGURE_EXTENSIONS, add_force, check_new_file


def add_convergence(sub):
    p = sub.add_parser(
        "convergence", help="weak error E f(finite) − E f(SDE) vs width, with its rate",
        description="For each functional f and time t = d/n, estimate the weak error "
                    "e(n) = E f(V_finite,n(t)) − E f(V_SDE(t)) at every width with a 95 % "
                    "interval (an unbiased difference of means: no noise floor), and fit the "
                    "rate r of e(n) ≈ C n^-r with an interval (generalised least squares; "
                    "the SDE sample is shared by the widths). The SDE runs at --dt (default: "
                    "a power of two <= 1/(16 max width)) and, as a check, at 2·dt: the "
                    "difference is printed as 'dt check'. docs/theory.md §6.8 derives the "
                    "rates to expect.",
        epilog="functionals: corr:a,b (ρ_ab, 0 on censored paths), exp:a (exp(−V_aa), 0 on "
               "censored paths), alive (path counted), exceed:K (sup over saved times s <= t "
               "of max_a V_aa > K), below:STAT:q (STAT <= q, e.g. below:mineig:0.05). "
               "Censoring: max|V_ab| <= --bound at every step / layer up to t, both sides.")
    add_model_args(p)
    add_v0_args(p)
    g = p.add_argument_group("study")
    g.add_argument("--widths", required=True,
                   help="comma-separated widths, e.g. 8,16,32,64,128,256 (>= 2 widths; each "
                        "time must be a whole number of layers at each)")
    g.add_argument("--t-end", type=float, required=True, help="horizon T > 0")
    g.add_argument("--times", help="comma-separated times in (0, T] (default T/4, T/2, T)")
    g.add_argument("--paths", required=True,
                   help="finite-network paths per width: one integer, or one per width "
                        "(comma-separated)")
    g.add_argument("--sde-paths", type=int, help="SDE paths (default: the paths of the "
                                                 "largest width)")
    g.add_argument("--dt", type=float, help="SDE step (default: a power of two <= 1/(16 max "
                                            "width))")
    g.add_argument("--method", default="spd", help=f"SDE scheme: one of "
                                                   f"{', '.join(SCHEMES)} (default %(default)s)")
    g.add_argument("--f", dest="functionals", action="append",
                   help=f"functional (repeatable; default {', '.join(DEFAULT_FUNCTIONALS)})")
    g.add_argument("--bound", type=float, default=DEFAULT_BOUND,
                   help="censoring / blow-up bound (default %(default)g)")
    g.add_argument("--time-correction", action="store_true",
                   help="compare width n with the SDE whose MLP drift is scaled by g_n = "
                        "2/(s₊² + s₋²) (arch mlp, relu only; one SDE sample per width)")
    g.add_argument("--seed", type=int, required=True, help="integer seed >= 0")
    g.add_argument("--threads", type=int, help="numba threads (default: all cores); results "
                                               "do not depend on it")
    g.add_argument("--json", action="store_true",
                   help="print one JSON object: settings and 'results', one per (f, t) with "
                        "widths, errors [[estimate, ci_low, ci_high], …], rate, rate_ci")
    g.add_argument("--plot", help="write a figure here (|e| vs n, one panel per functional)")
    add_force(p)
    p.set_defaults(func=_cmd_convergence)


def _int_list(text, flag):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CovsdeInputError(f"{flag} must be comma-separated integers, got {text!r}") from None


def _float_list(text, flag):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CovsdeInputError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def _cmd_convergence(args):
    from sde.simulate import as_int

    from ..convergence import convergence_study

    model = model_from_args(args)
    widths = _int_list(args.widths, "--widths")
    for w in widths:
        as_int("--widths", w, 2)
    paths = _int_list(args.paths, "--paths")
    if len(paths) == 1:
        paths = paths[0]
    times = _float_list(args.times, "--times") if args.times else None
    if not (math.isfinite(args.t_end) and args.t_end > 0):
        raise CovsdeInputError(f"--t-end must be a finite number > 0, got {args.t_end!r}")
    if args.plot:
        check_new_file(args.plot, "--plot", args.force, FIGURE_EXTENSIONS)
    V0 = v0_from_args(args)
    set_threads(args.threads)
    try:
        r = convergence_study(model, V0, widths=widths, t_end=args.t_end, times=times,
                              n_paths=paths, sde_paths=args.sde_paths, dt=args.dt,
                              method=args.method, seed=args.seed, bound=args.bound,
                              functionals=args.functionals or DEFAULT_FUNCTIONALS,
                              time_correction=args.time_correction,
                              progress=not args.json)
    except CovsdeInputError as exc:
        raise CovsdeInputError(_as_flags(str(exc))) from None
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        a = r.attrs
        print(f"weak errors e(n) = E f(finite) − E f(SDE), arch={model.arch}, m = {a['m']}, "
              f"seed {a['seed']}; SDE: {a['sde_paths']} paths, {a['method']}, dt = "
              f"{a['dt']:g} (check at 2dt: {a['dt_check_paths']} paths); finite paths per "
              f"width: {a['n_paths']}")
        for line in r.table():
            print(line)
    if args.plot:
        from ..figures.convergence import convergence_figure
        from ..figures.style import save_figure

        save_figure(convergence_figure(r), args.plot, "--plot")
    return 0


_FLAGS = {"widths": "--widths", "n_paths": "--paths", "sde_paths": "--sde-paths",
          "dt": "--dt", "times": "--times", "method": "--method", "functional": "--f",
          "functionals": "--f", "bound": "--bound", "seed": "--seed", "t_end": "--t-end"}


def _as_flags(msg):
    for name, fl in _FLAGS.items():
        if msg.startswith(name + " ") or msg.startswith(name + ":"):
            return fl + msg[len(name):]
    return msg
