"""``covsde finite``: sample covariance paths of a finite shaped network (literal or reduced).

Calls :func:`finite.sample` and nothing else; bad input raises
:class:`sde.errors.CovsdeInputError`, which ``covsde``'s ``main`` turns into one line on
stderr and exit code 2 (no output file is written). ``--t-end`` must be a whole number of
layers (T·n), as ``simulate``'s T must be a whole number of steps: a non-whole one is refused
with the nearest valid value.
"""
import math
import re
import time
import warnings

from sde.errors import CovsdeInputError

from .args import (add_model_args, flag, add_run_args, add_v0_args, check_tokens_memory,
                   memory_limit_bytes, model_from_args, set_threads, v0_from_args)
from .defaults import SAMPLERS
from .outputs import DATASET_EXTENSIONS, check_new_file

#: sample() argument names → the flags a CLI user typed (for error messages).
_FLAG_NAMES = {k: flag(k) for k in ("width", "key_width", "depth", "t_end", "n_paths", "seed",
                                    "sampler", "save_every", "threads", "heads")}
_NAME_RE = re.compile(r"(?<![\w\-'])(" + "|".join(_FLAG_NAMES) + r")(?![\w'=-])")


def add_finite(sub):
    p = sub.add_parser(
        "finite", help="sample covariance paths of a finite-width shaped network",
        description="Sample V = X Xᵀ/n layer by layer through a finite shaped network "
                    "(docs/theory.md §2) from the input X0 = L E sqrt(n), X0 X0ᵀ/n = V0, and write "
                    "V(path, time, token_a, token_b) with time = layer/width to a netCDF "
                    "file. --sampler reduced (the default where it exists) is the exact "
                    "O(m³)-per-attention-layer sampler of docs/theory.md §5; --sampler literal "
                    "multiplies explicit weight matrices (same law, O(m n²) per layer).")
    add_model_args(p)
    add_v0_args(p)
    g = p.add_argument_group("network and sampling")
    g.add_argument("--width", type=int, required=True,
                   help="width n; heads must divide n and n/heads >= m")
    g.add_argument("--key-width", type=int,
                   help="key width per head n_k >= 1 (attention, block; default n/heads)")
    g.add_argument("--depth", type=int, help="number of layers d >= 0 (or --t-end)")
    g.add_argument("--t-end", type=float, help="terminal time T = d/n > 0, a whole number of "
                                               "layers T·n (or --depth)")
    g.add_argument("--sampler", default=None,
                   help=f"one of {', '.join(SAMPLERS)} (default: reduced where an exact reduced "
                        f"sampler exists, else literal; LayerNorm archs are literal only), or "
                        f"kernel-map: the deterministic width-first kernel map Σ ← A Σ Aᵀ as a "
                        f"one-path dataset, where exact (E-SPA/U-SPA and Value-SkipInit with "
                        f"β = 0, attention-only or vanilla; --paths is then ignored)")
    g.add_argument("--initial-x", choices=("haar", "aligned"),
                   help="initial frame E of X0 = sqrt(n) L E: haar (fresh Haar-random per path, "
                        "inside each head block) or aligned (coordinate vectors); default haar "
                        "where the law depends on X0 beyond V0 (LayerNorm, fixed weight "
                        "matrices), else aligned (same law)")
    g.add_argument("--paths", type=int, required=True, help="number of paths >= 1")
    g.add_argument("--save-every", type=int, help="save every K-th layer (default: <= ~100 "
                                                  "saved layers; first and last always saved)")
    add_run_args(g, "worker threads")
    p.set_defaults(func=_cmd_finite)


def _flagged(message):
    return _NAME_RE.sub(lambda mo: _FLAG_NAMES[mo.group(1)], message)


def check_whole_depth(t_end, width):
    """Refuse a ``--t-end`` that is not a whole number of layers at ``width``, naming the
    nearest valid ``--t-end`` and its ``--depth`` (the rule of ``simulate`` for T/dt)."""
    if t_end is None or not math.isfinite(t_end) or t_end <= 0 or width is None or width < 1:
        return  # the library names these errors
    layers = t_end * width
    depth = round(layers)
    if depth >= 1 and abs(depth - layers) > 1e-9 * max(1.0, layers):
        raise CovsdeInputError(f"--t-end must be a whole number of layers at --width {width}, "
                               f"got T·n = {layers:.6g}: the nearest valid value is --t-end "
                               f"{depth / width:.6g} (--depth {depth})")


def _cmd_finite(args):
    from finite import sample
    from finite.kernel_map import kernel_map
    from finite.sample import RealisedTimeWarning, depth_from
    from sde.io import write_dataset
    from sde.schema import summary_line

    model = model_from_args(args)
    memory_limit = memory_limit_bytes(args)
    if args.paths >= 1:
        check_tokens_memory(args, args.paths, memory_limit)
    check_whole_depth(args.t_end, args.width)
    V0 = v0_from_args(args)
    check_new_file(args.out, "--out", args.force, DATASET_EXTENSIONS)
    set_threads(args.threads)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RealisedTimeWarning)
            if args.sampler == "kernel-map":
                ds = kernel_map(model, V0, depth=depth_from(args.depth, args.t_end, args.width),
                                width=args.width, save_every=args.save_every)
            else:
                ds = sample(model, V0, width=args.width, n_paths=args.paths, seed=args.seed,
                            depth=args.depth, t_end=args.t_end, sampler=args.sampler,
                            key_width=args.key_width, save_every=args.save_every,
                            threads=args.threads, memory_limit=memory_limit,
                            initial_x=args.initial_x)
    except CovsdeInputError as exc:
        raise CovsdeInputError(_flagged(str(exc)), getattr(exc, "param", None)) from None
    for w in caught:
        if issubclass(w.category, RealisedTimeWarning):
            print(f"note: {_flagged(str(w.message))}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ds.attrs["threads"] = args.threads or 0
    write_dataset(ds, args.out)
    clipped = ds.attrs.get("n_psd_clipped", 0)
    note = f"; {clipped} factorisations clipped round-off eigenvalues" if clipped else ""
    print(f"{summary_line(ds)}{note}; depth {ds.attrs['depth_layers']} "
          f"(T = {ds.attrs['t_end']:.6g}); {time.perf_counter() - t0:.1f} s; wrote {args.out}")
    return 0
