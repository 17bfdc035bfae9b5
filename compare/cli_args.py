"""Shared CLI pieces: a parser whose errors are one line (exit 2), model and V0 flags.

Which model flags apply to which architecture is said once, in :data:`ARCH_FLAGS`.
"""
import argparse
import math
import sys

from sde.errors import CovsdeInputError
from sde.initial import equicorrelated, load_V0
from sde.models import MODELS

#: arch → (required flags, optional flags), by argparse dest.
ARCH_FLAGS = {
    "attention": ({"gamma", "tau0"}, {"heads"}),
    "block": ({"gamma", "tau0"}, {"heads", "c_plus", "c_minus"}),
    "mlp": (set(), {"activation", "c_plus", "c_minus", "a"}),
    "mlp-res": ({"gamma"}, {"c_plus", "c_minus"}),
}
MODEL_FLAGS = ("gamma", "tau0", "heads", "c_plus", "c_minus", "activation", "a")


def flag(dest):
    return "--" + dest.replace("_", "-")


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line on stderr and exit code 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def add_model_args(p):
    g = p.add_argument_group("model (which flags apply depends on --arch)")
    g.add_argument("--arch", required=True, choices=sorted(ARCH_FLAGS),
                   help="attention: shaped attention sub-block; block: attention + residual "
                        "MLP per layer; mlp: Li–Nica–Roy shaped MLP (no residual); mlp-res: "
                        "residual shaped-ReLU MLP sub-block")
    g.add_argument("--gamma", type=float, help="residual branch weight γ ∈ (0, 1], λ² + γ² = 1 "
                                               "(attention, block, mlp-res; required there)")
    g.add_argument("--tau0", type=float, help="attention temperature τ0 > 0; logits are "
                                              "divided by τ0 sqrt(n n_k) (attention, block)")
    g.add_argument("--heads", type=int, help="attention heads H >= 1 (default 1)")
    g.add_argument("--c-plus", type=float, help="shaped ReLU slope s₊ = 1 + c₊/sqrt(n) "
                                                "(default 0)")
    g.add_argument("--c-minus", type=float, help="shaped ReLU slope s₋ = 1 + c₋/sqrt(n) "
                                                 "(default -1)")
    g.add_argument("--activation", help="mlp only: relu (shaped ReLU) or tanh (smooth shaping "
                                        "s·tanh(x/s), s = a sqrt(n)); default relu")
    g.add_argument("--a", type=float, help="mlp with --activation tanh: shaping scale a > 0 "
                                           "(default 1)")


def model_from_args(args):
    """Build the model, refusing flags that do not apply to the arch and missing ones."""
    required, optional = ARCH_FLAGS[args.arch]
    given = {k for k in MODEL_FLAGS if getattr(args, k) is not None}
    for k in sorted(given - required - optional):
        raise CovsdeInputError(f"{flag(k)} does not apply to --arch {args.arch}")
    for k in sorted(required - given):
        raise CovsdeInputError(f"{flag(k)} is required for --arch {args.arch}")
    if args.arch == "mlp":
        act = args.activation or "relu"
        if act == "tanh" and given & {"c_plus", "c_minus"}:
            raise CovsdeInputError("--c-plus/--c-minus do not apply to --activation tanh")
        if act == "relu" and "a" in given:
            raise CovsdeInputError("--a applies only to --activation tanh")
    kwargs = {k: getattr(args, k) for k in given}
    return MODELS[args.arch](**kwargs)


def add_v0_args(p):
    g = p.add_argument_group("initial covariance V0 (exactly one of --V0 or --tokens/--rho0)")
    g.add_argument("--V0", help="V0 from a .npy file: symmetric positive definite (m, m), m >= 2")
    g.add_argument("--tokens", type=int, help="number of tokens m >= 2 (with --rho0)")
    g.add_argument("--rho0", type=float, help="V0 = unit diagonal, constant off-diagonal ρ0 "
                                              "with -1/(m-1) < ρ0 < 1 (with --tokens)")


def v0_from_args(args):
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
    g.add_argument("--out", required=True, help="output netCDF file (.nc)")


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
