"""Shared CLI pieces: a parser whose errors are one line (exit 2), model and V0 flags.

Model flags are derived from the model classes (:data:`sde.models.MODELS`): every constructor
parameter ``name`` is the flag :func:`flag` (``--`` + name with ``_`` → ``-``), with the type,
help and range its dataclass field carries (:func:`sde.parameters.describe`), required for an
arch when it has no default, refused for an arch that does not take it; a model with a new
parameter name gets its flag with nothing to edit here. Library errors name the parameter;
the CLI shows the flag that sets it (:func:`cli_error`). Only numpy is imported here, so that
``covsde --help`` stays light.
"""
import argparse
import math
import sys

from sde.errors import CovsdeInputError
from sde.models import MODELS
from sde.parameters import REQUIRED, describe

#: parameter names whose flag is not the generic spelling.
_FLAG_EXCEPTIONS = {"n_paths": "--paths"}


def flag(name):
    """The CLI flag of a parameter name: ``c_plus`` → ``--c-plus``, ``n_paths`` → ``--paths``."""
    return _FLAG_EXCEPTIONS.get(name) or "--" + name.replace("_", "-")


def shown(name):
    """A parameter as a CLI message shows it: the flag, and the name when it differs."""
    f = flag(name)
    return f if f == "--" + name else f"{f} ({name})"


def cli_error(exc):
    """``exc`` (:class:`CovsdeInputError`) with its leading parameter name shown as a flag."""
    msg = str(exc)
    param = getattr(exc, "param", None)
    if param and msg.startswith(param + " "):
        msg = shown(param) + msg[len(param):]
    return CovsdeInputError(msg)


def arch_parameters(arch):
    """(required, optional) parameter names of ``MODELS[arch]``, from its constructor."""
    params = dict(MODELS[arch].parameters())
    required = {k for k, d in params.items() if d is REQUIRED}
    return required, set(params) - required


def model_parameters():
    """{name: (type, help text, {arch: default})} over every model class, in first-seen
    order; type and help from the first class that has the parameter."""
    out = {}
    for arch, cls in MODELS.items():
        for info in describe(cls):
            out.setdefault(info.name, (info.type, info.text(), {}))[2][arch] = info.default
    return out


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line on stderr and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def add_model_args(p):
    g = p.add_argument_group("model (which flags apply depends on --arch)")
    g.add_argument("--arch", required=True, choices=sorted(MODELS),
                   help="; ".join(f"{arch}: {cls.summary}" for arch, cls in MODELS.items()))
    for name, (typ, help_text, per_arch) in model_parameters().items():
        required = sorted(a for a, d in per_arch.items() if d is REQUIRED)
        defaults = {d for d in per_arch.values() if d is not REQUIRED}
        where = ", ".join(sorted(per_arch))
        text = f"{help_text} ({where}"
        if required:
            text += f"; required for {', '.join(required)}"
        if len(defaults) == 1:
            text += f"; default {defaults.pop()}"
        if typ is bool:
            g.add_argument(flag(name), dest=name, action="store_const", const=True,
                           default=None, help=text + ")")
        else:
            g.add_argument(flag(name), dest=name, type=typ, help=text + ")")


def model_from_args(args):
    """Build the model, refusing flags that do not apply to the arch and missing ones."""
    cls = MODELS[args.arch]
    params = model_parameters()
    given = {k: getattr(args, k) for k in params if getattr(args, k) is not None}
    names = dict(cls.parameters())
    for k in sorted(set(given) - set(names)):
        raise CovsdeInputError(f"{flag(k)} does not apply to --arch {args.arch}")
    for k in sorted(k for k, d in names.items() if d is REQUIRED and k not in given):
        raise CovsdeInputError(f"{flag(k)} is required for --arch {args.arch}")
    try:
        cls.check_given(given, show=flag)
        return cls(**given)
    except CovsdeInputError as exc:
        raise cli_error(exc) from None


def add_v0_args(p):
    g = p.add_argument_group("initial covariance V0 (exactly one of --V0 or --tokens/--rho0)")
    g.add_argument("--V0", help="V0 from a .npy file: symmetric positive definite (m, m), m >= 2")
    g.add_argument("--tokens", type=int, help="number of tokens m >= 2 (with --rho0)")
    g.add_argument("--rho0", type=float, help="V0 = unit diagonal, constant off-diagonal ρ0 "
                                              "with -1/(m-1) < ρ0 < 1 (with --tokens)")


def v0_from_args(args):
    from sde.initial import equicorrelated, load_V0

    if args.V0 is not None:
        if args.tokens is not None or args.rho0 is not None:
            raise CovsdeInputError("give either --V0 or --tokens with --rho0, not both")
        return load_V0(args.V0)
    if args.tokens is None or args.rho0 is None:
        raise CovsdeInputError("give either --V0 FILE.npy or both --tokens and --rho0")
    return equicorrelated(args.tokens, args.rho0)


def set_threads(threads):
    """Set numba's thread count (1 … the machine's count)."""
    if threads is None:
        return
    import numba

    top = numba.config.NUMBA_NUM_THREADS
    if not (1 <= threads <= top):
        raise CovsdeInputError(f"--threads must be between 1 and {top}, got {threads}")
    numba.set_num_threads(threads)


def add_run_args(g, threads_help):
    """--seed, --threads, --memory-limit and --out, shared by the sampling subcommands."""
    g.add_argument("--seed", type=int, required=True, help="integer seed >= 0")
    g.add_argument("--threads", type=int, help=f"{threads_help} (default: all cores); results "
                                               "do not depend on it")
    g.add_argument("--memory-limit", type=float, default=4.0,
                   help="GiB allowed for the output array (default %(default)g)")
    g.add_argument("--out", required=True, help="output netCDF file (.nc; an existing one is "
                                                "refused without --force)")
    g.add_argument("--force", action="store_true", help="replace an existing --out")


#: --memory-limit is capped here (GiB) so that the byte count stays a finite integer.
MAX_MEMORY_GIB = 2.0 ** 30


def memory_limit_bytes(args):
    """--memory-limit (GiB) as bytes: a finite number in (0, 2**30] GiB, else a clear error."""
    gib = args.memory_limit
    if not (math.isfinite(gib) and 0 < gib <= MAX_MEMORY_GIB):
        raise CovsdeInputError(f"--memory-limit must be a number in (0, {MAX_MEMORY_GIB:.0f}] "
                               f"GiB, got {gib}")
    return int(gib * 2 ** 30)


def check_tokens_memory(args, n_paths, memory_limit):
    """Before V0 is built from --tokens: the output holds at least two saved times."""
    from sde.simulate import check_memory

    if args.V0 is None and args.tokens is not None and args.tokens >= 2:
        check_memory(n_paths, 2, args.tokens, memory_limit)
