"""Public entry point: :func:`sample` draws covariance paths of finite shaped networks.

Two samplers of the same law (docs/theory.md §2, §5):

* ``"literal"`` — explicit weight matrices (:mod:`finite.literal`), O(m n²) per layer;
* ``"reduced"`` — the exact reduced sampler (:mod:`finite.reduced`), O(m³) per attention
  layer and O(m² n) per MLP layer, whatever n.

Both start from ``X0 = L E sqrt(n)`` with each token spread evenly over the H head blocks,
so every block Gram is ``V0 / H`` (the reduced sampler's state). The output is the dataset
of :mod:`sde.schema` with ``time = layer / width`` (dt = 1/width) and a ``depth`` coord.

Random numbers: paths are cut into RNG blocks of :data:`sde.simulate.RNG_BLOCK` paths, block
k drawing from ``Generator(PCG64(SeedSequence(seed).spawn(n_blocks)[k]))``
(:func:`sde.simulate.block_generators`). Within a block every draw happens in a fixed order:
layer by layer, sub-layer by sub-layer, path by path. The literal sampler calls the block's
Generator (:mod:`finite.literal`); the reduced one draws the same PCG64 stream through the
inlined generator (:mod:`finite.streams`), each path's draws in the order of
:mod:`finite.reduced_kernels`. A result depends only on (seed, RNG_BLOCK, sampler) — not on
the thread count, on :data:`REDUCED_CHUNK_BLOCKS` or on :data:`LITERAL_CHUNK_BYTES`.
"""
import concurrent.futures
import math
import numbers
import os
import threading
import time as _time
import warnings

import numpy as np
from tqdm.auto import tqdm

from sde.runs import (DEFAULT_MEMORY_LIMIT, MAX_STEPS, RNG_BLOCK, as_int, as_seed,
                      block_generators, check_memory, check_model, provenance, saved_steps)
from sde import masks
from sde.errors import CovsdeInputError
from sde.initial import validate_V0
from sde.schema import make_dataset

from . import consensus as cons
from . import layers
from .unshaped import layers as unshaped_layers  # noqa: F401  (registers their finite maps)
from . import literal as lit
from . import reduced as red
from . import weight_init as wi
from .streams import BlockStreams

SAMPLERS = ("literal", "reduced")
#: at most this many RNG blocks per reduced-sampler task (the blocks are split evenly over
#: the threads, so that every thread gets the same work); not part of the result.
REDUCED_CHUNK_BLOCKS = 64
#: bytes of weights drawn at once by one literal-sampler task; not part of the result.
LITERAL_CHUNK_BYTES = 256 * 2 ** 20
#: literal runs whose time estimate exceeds this many seconds are refused.
LITERAL_MAX_SECONDS = 48 * 3600.0
#: literal runs whose weights for ONE path exceed this many bytes are refused.
LITERAL_MAX_PATH_BYTES = 8 * 2 ** 30
#: cost model of this machine class (2 cores): seconds per normal and per flop, one core.
_SEC_PER_NORMAL = 15e-9
_SEC_PER_FLOP = 1e-9
_CORES = 2


#: attrs ``log_consensus_method``: how the dataset's ``log_consensus`` was computed
LOG_CONSENSUS_CARRIED = ("carried: X = 1 xbar^T + Y with Y kept separately (docs/theory.md "
                         "2.4c); finite down to about -1.8e308")
LOG_CONSENSUS_FROM_V = ("from V: 0.5 log((tr V - 1^T V 1/m)/tr V), NaN where that difference "
                        "is round-off (below ~1e-13 tr V)")


class RealisedTimeWarning(UserWarning):
    """``t_end · width`` was not a whole number of layers: the realised time differs."""


def depth_from(depth, t_end, width):
    """The number of layers: ``depth`` itself, or ``round(t_end · width)`` (exactly one given)."""
    if (depth is None) == (t_end is None):
        raise CovsdeInputError("give exactly one of depth or t_end")
    if depth is None:
        if (isinstance(t_end, bool) or not isinstance(t_end, numbers.Real)
                or not math.isfinite(t_end) or t_end < 0):
            raise CovsdeInputError(f"t_end must be a finite number >= 0, got {t_end!r}")
        if t_end * width > MAX_STEPS:
            raise CovsdeInputError(f"t_end * width must be at most {MAX_STEPS} layers, "
                                   f"got {t_end * width:.3g}")
        depth = int(round(t_end * width))
        if depth == 0:
            raise CovsdeInputError(f"t_end * width = {t_end * width:.3g} rounds to depth 0: "
                                   f"t_end must be at least 1/(2 width) = {0.5 / width:.3g}")
        if abs(depth - t_end * width) > 1e-9 * max(1.0, depth):
            warnings.warn(f"t_end = {t_end:g} at width {width} is {t_end * width:.6g} layers: "
                          f"sampled depth {depth}, i.e. t_end = {depth / width:.6g}",
                          RealisedTimeWarning, stacklevel=3)
    depth = as_int("depth", depth, 1)
    if depth > MAX_STEPS:
        raise CovsdeInputError(f"depth must be at most {MAX_STEPS} layers, got {depth}")
    return depth


def literal_estimate(bound_layers, m, depth, n_paths):
    """(seconds, bytes of weights per path) of a literal run on this machine class."""
    normals, flops = 0, 0.0
    for layer in bound_layers:
        nl, fl = layer.literal_cost(m)
        normals += nl
        flops += fl
    per = normals * _SEC_PER_NORMAL + flops * _SEC_PER_FLOP
    return per * depth * n_paths / _CORES, 8 * normals


def sample(model, V0, *, width, n_paths, seed, depth=None, t_end=None, sampler=None,
           key_width=None, save_every=None, progress=None, threads=None,
           memory_limit=DEFAULT_MEMORY_LIMIT, initial_x=None):
    """Sample covariance paths of the finite network of ``model`` at width ``width``.

    Parameters
    ----------
    model : :class:`sde.models.Model` — attention, block (attention then residual MLP per
        layer), mlp (Li–Nica–Roy, no residual; relu or tanh shaping) or mlp-res.
    V0 : (m, m) symmetric positive definite — the input covariance, reproduced exactly.
    width : int n — network width; H = model.heads must divide n and n/H ≥ m.
    n_paths : int ≥ 1; seed : int ≥ 0.
    depth, t_end : exactly one; depth = round(t_end · width) layers.
    sampler : ``"reduced"`` (exact, fast) or ``"literal"`` (weight matrices); default: reduced
        where every sub-layer has an exact reduced sampler, else literal.
    key_width : int ≥ 1, key width per head (attention, block); default n/H.
    save_every : save every k-th layer (default: ≤ ~100 saved layers; first and last
        always saved).
    progress : bool, tqdm bar (default: on for long runs).
    threads : worker threads (default: the machine's cores); never changes the result.
    memory_limit : bytes allowed for the output V array.
    initial_x : ``"haar"`` (a fresh Haar-random orthonormal frame E per path, inside each head
        block) or ``"aligned"`` (E = the even spread of coordinate vectors), X0 = √n L E
        (:mod:`finite.weight_init`). Default: ``"haar"`` where the law depends on X0 beyond
        V0 (LayerNorm, fixed weight matrices), else ``"aligned"`` (the two agree in law).

    Returns
    -------
    Dataset (:mod:`sde.schema`): ``V(path, time, token_a, token_b)``, ``time = layer/width``,
    ``step`` and ``depth`` = layer. A reduced path whose state cannot be factorised (non-
    finite, or not PSD beyond round-off) is dead from that layer (status 3); a literal path
    that turns non-finite has status 2. ``n_psd_clipped`` counts factorisations that needed
    negative round-off eigenvalues clipped (harmless). ``log_consensus(path, time)``: the
    natural log of μ(X)/‖X‖_F, carried without a round-off floor where every sub-layer allows
    it (:mod:`finite.consensus`), else from V with NaN below V's floor (attr
    ``log_consensus_method``).
    """
    check_model(model)
    if sampler is not None and sampler not in SAMPLERS:
        raise CovsdeInputError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    V0 = validate_V0(V0)
    m = V0.shape[0]
    width = as_int("width", width, 1)
    heads = int(model.heads)
    if width % heads:
        raise CovsdeInputError(f"width must be divisible by heads = {heads}, got width = {width}")
    if width // heads < m:
        raise CovsdeInputError(f"width/heads must be >= m = {m} tokens, got width = {width}, "
                               f"heads = {heads}")
    if layers.takes_key_width(model):
        key_width = (width // heads if key_width is None
                     else as_int("key_width", key_width, 1))
    elif key_width is not None:
        raise CovsdeInputError(f"key_width applies only to models with attention, not "
                               f"{model.arch}")
    depth = depth_from(depth, t_end, width)
    n_paths = as_int("n_paths", n_paths, 1)
    seed = as_seed(seed)
    steps = saved_steps(depth, save_every)
    check_memory(n_paths, len(steps), m, memory_limit)
    if threads is None:
        threads = os.cpu_count() or 1
    threads = as_int("threads", threads, 1)
    mask_attrs = masks.run_attrs(model, m, seed)  # realises (and validates) the mask
    bound_layers = layers.bind(model, width, heads, key_width, depth, seed)
    if sampler is None:
        sampler = "reduced" if all(b.has_reduced for b in bound_layers) else "literal"
    elif sampler == "reduced" and not all(b.has_reduced for b in bound_layers):
        raise CovsdeInputError(f"sampler reduced is not available for arch {model.arch} (no "
                               f"exact reduction, docs/theory.md §5.8): use sampler literal")
    invariant = all(getattr(b, "rotation_invariant", True) for b in bound_layers)
    if initial_x is None:
        initial_x = "aligned" if invariant else "haar"
    elif initial_x not in wi.INITIAL_X:
        raise CovsdeInputError(f"initial_x must be one of {', '.join(wi.INITIAL_X)}, got "
                               f"{initial_x!r}", "initial_x")
    for b in bound_layers:
        b.prepare(m)
    if sampler == "literal":
        secs, path_bytes = literal_estimate(bound_layers, m, depth, n_paths)
        if path_bytes > LITERAL_MAX_PATH_BYTES or secs > LITERAL_MAX_SECONDS:
            raise CovsdeInputError(
                f"literal sampling at width {width} would need ~{secs / 3600:.3g} h and "
                f"{path_bytes / 2 ** 30:.3g} GiB of weights per path on this machine "
                f"(estimate): use sampler='reduced' (--sampler reduced), same law")
    if progress is None:
        if sampler == "literal":
            progress = literal_estimate(bound_layers, m, depth, n_paths)[0] > 10
        else:
            work = 1 + sum(layer.reduced_work(m) for layer in bound_layers)
            progress = n_paths * depth * work > 2e6

    t0 = _time.perf_counter()
    out_V = np.full((n_paths, len(steps), m, m), np.nan)
    out_lc = np.full((n_paths, len(steps)), np.nan)
    status = np.zeros(n_paths, dtype=np.int8)
    death = np.full(n_paths, np.inf)
    gens = block_generators(seed, n_paths)
    sizes = [min(RNG_BLOCK, n_paths - k * RNG_BLOCK) for k in range(len(gens))]
    cfg = _Config(bound_layers, V0, width, heads, depth, steps)
    cfg.haar = initial_x == "haar" and sampler == "literal"
    cfg.carry = cons.carried(bound_layers, sampler)
    per_task = (min(REDUCED_CHUNK_BLOCKS, math.ceil(len(gens) / threads))
                if sampler == "reduced" else 1)
    tasks = []
    for b0 in range(0, len(gens), per_task):
        p0 = b0 * RNG_BLOCK
        p1 = p0 + sum(sizes[b0:b0 + per_task])
        tasks.append((gens[b0:b0 + per_task], sizes[b0:b0 + per_task], slice(p0, p1)))
    run = _run_reduced if sampler == "reduced" else _run_literal
    chunk_bytes = max(1, LITERAL_CHUNK_BYTES // min(threads, len(tasks)))
    clipped = [0]
    lock = threading.Lock()
    with tqdm(total=n_paths * depth, unit="path-layer", unit_scale=True,
              disable=not progress, leave=False) as bar:
        def job(task):
            g, sz, sl = task
            n_clip = run(cfg, g, sz, out_V[sl], status[sl], death[sl], bar, chunk_bytes,
                         out_lc[sl])
            with lock:
                clipped[0] += n_clip

        if threads == 1 or len(tasks) == 1:
            for task in tasks:
                job(task)
        else:
            with concurrent.futures.ThreadPoolExecutor(min(threads, len(tasks))) as ex:
                for f in [ex.submit(job, task) for task in tasks]:
                    f.result()
    wall = _time.perf_counter() - t0
    attrs = provenance(
        f"finite-{sampler}", model, method=sampler, seed=seed, dt=1.0 / width,
        t_end=depth / width, n_steps=depth, steps=steps, V0=V0, wall=wall,
        sampler=sampler, width=width, key_width=key_width, heads=heads, depth_layers=depth,
        t_end_requested=None if t_end is None else float(t_end),
        initial_x=initial_x,
        initial_X=("X0 = L E sqrt(n), L L^T = V0, E a fresh Haar-random orthonormal frame per "
                   "path inside each head block" if initial_x == "haar" else
                   "X0 = L E sqrt(n), L L^T = V0, rows of E spread evenly over head blocks")
        + ("" if invariant else "; the law depends on this choice (LayerNorm or fixed weights)"),
        **_init_attrs(model), **{k: v for b in bound_layers for k, v in b.run_attrs().items()},
        n_psd_clipped=int(clipped[0]), psd_tol=red.PSD_TOL,
        log_consensus_method=LOG_CONSENSUS_CARRIED if cfg.carry else LOG_CONSENSUS_FROM_V,
        **mask_attrs)
    ds = make_dataset(out_V, status, death, steps, 1.0 / width, attrs, depth=steps)
    if not cfg.carry:
        out_lc = cons.log_consensus_from_V(out_V)
    ds["log_consensus"] = (("path", "time"), out_lc)
    ds["log_consensus"].attrs["long_name"] = "natural log of mu(X)/||X||_F"
    return ds


def _init_attrs(model):
    """sha256 digests of the .npy weight files a model reads (provenance)."""
    out = {}
    for sub in model.sublayers():
        sub = getattr(sub, "inner", sub)
        for name in ("value_init", "query_init", "key_init"):
            init = getattr(sub, name, "gaussian")
            if wi.is_file_init(init):
                out[f"{name}_sha256"] = wi.file_digest(init)
    return out


class _Config:
    """What the runners need: the bound finite layers, V0 and the saved steps."""

    def __init__(self, bound_layers, V0, width, heads, depth, steps):
        self.layers, self.V0, self.width, self.heads = bound_layers, V0, width, heads
        self.depth, self.steps = depth, steps
        self.m = V0.shape[0]
        self.save_at = {int(s): j for j, s in enumerate(steps)}


# ---------------------------------------------------------------- reduced

def _run_reduced(cfg, gens, sizes, out_V, status, death, bar, _chunk_bytes, out_lc):
    """Run the blocks ``gens`` (sizes ``sizes``) through all layers; fill out_V etc."""
    m, H, n = cfg.m, cfg.heads, cfg.width
    p = sum(sizes)
    bounds = np.cumsum([0] + list(sizes))
    sls = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    start = np.broadcast_to(cfg.V0 / H, (H, m, m))
    Vh = np.broadcast_to(start, (p, H, m, m)).copy()
    alive = np.ones(p, dtype=bool)
    n_clip = 0
    streams = BlockStreams(gens)
    if cfg.carry:
        state = cons.ReducedState(np.broadcast_to(np.linalg.cholesky(cfg.V0), (p, m, m)), H)
    if 0 in cfg.save_at:
        out_V[:, cfg.save_at[0]] = cfg.V0
        if cfg.carry:
            out_lc[:, cfg.save_at[0]] = state.log_consensus()
    for layer in range(cfg.depth):
        failed = np.zeros(p, dtype=bool)
        for sub in cfg.layers:
            rec = {} if cfg.carry else None
            Vh, f, c = (sub.reduced(Vh, streams, sls, alive, layer, record=rec) if cfg.carry
                        else sub.reduced(Vh, streams, sls, alive, layer))
            if cfg.carry:
                cons.reduced_step(state, sub, rec, layer)
            failed |= f
            n_clip += c
        failed |= ~np.isfinite(Vh).all(axis=(1, 2, 3))
        newly = failed & alive
        if newly.any():
            status[newly] = 3
            death[newly] = (layer + 1) / n
            alive &= ~newly
        if not alive.all():
            Vh[~alive] = start  # keep dead paths numerically harmless; their output is NaN
        j = cfg.save_at.get(layer + 1)
        if j is not None:
            V = Vh.sum(axis=1)
            V[~alive] = np.nan
            out_V[:, j] = V
            if cfg.carry:
                lc = state.log_consensus()
                lc[~alive] = np.nan
                out_lc[:, j] = lc
        bar.update(p)
    streams.write_back()
    return n_clip


# ---------------------------------------------------------------- literal

def _run_literal(cfg, gens, sizes, out_V, status, death, bar, chunk_bytes, out_lc):
    """Run one RNG block through all layers with explicit weights."""
    (gen,), (p,) = gens, sizes
    m, H, n = cfg.m, cfg.heads, cfg.width
    if cfg.haar:
        L0 = np.linalg.cholesky(cfg.V0)
        X = (L0 @ wi.haar_frames(gen, p, m, n, H)) * math.sqrt(n)
    else:
        X = np.broadcast_to(lit.initial_X(cfg.V0, n, H), (p, m, n)).copy()
    subs = [(sub.literal_shapes(), sub.literal) for sub in cfg.layers]
    alive = np.ones(p, dtype=bool)
    if cfg.carry:
        Yhat, ell = cons.start(X - X.mean(axis=1, keepdims=True))
        steps_of = [cons.literal_step_of(sub) for sub in cfg.layers]
    if 0 in cfg.save_at:
        out_V[:, cfg.save_at[0]] = lit.gram(X)
        if cfg.carry:   # the same number as the reduced sampler's (from L, L Lᵀ = V0)
            out_lc[:, cfg.save_at[0]] = cons.ReducedState(
                np.linalg.cholesky(cfg.V0)[None]).log_consensus()[0]
    qs = [min(p, max(1, int(chunk_bytes // (8 * max(1, lit.weight_count(shapes))))))
          for shapes, _ in subs]
    buffers = [[np.empty((q, a, b)) for a, b in shapes] for q, (shapes, _) in zip(qs, subs)]
    for layer in range(cfg.depth):
        for k, (q, buf, (shapes, apply)) in enumerate(zip(qs, buffers, subs)):
            for i0 in range(0, p, q):
                i1 = min(p, i0 + q)
                weights = lit.draw_weights(gen, i1 - i0, shapes, buf)
                if cfg.carry:
                    Yhat[i0:i1], ell[i0:i1] = steps_of[k](cfg.layers[k], X[i0:i1], Yhat[i0:i1],
                                                          ell[i0:i1], weights, layer)
                X[i0:i1] = apply(X[i0:i1], weights, layer)
        V = lit.gram(X)
        newly = alive & ~np.isfinite(V).all(axis=(1, 2))
        if newly.any():
            status[newly] = 2
            death[newly] = (layer + 1) / n
            alive &= ~newly
            X[newly] = 0.0
        j = cfg.save_at.get(layer + 1)
        if j is not None:
            V[~alive] = np.nan
            out_V[:, j] = V
            if cfg.carry:
                with np.errstate(divide="ignore", invalid="ignore"):
                    out_lc[:, j] = np.where(alive, ell - cons.log_norm(X), np.nan)
        bar.update(p)
    return 0
