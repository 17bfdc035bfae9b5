"""Private numba kernels of :func:`sde.simulate`: one integrator core.

* :mod:`.state` — status codes, the state check, the blow-up test, the path start, the lane
  workspace slots;
* :mod:`.noise_sources` — the inlined PCG64 draw and supplied unit normals;
* :mod:`.steps` — Euler–Maruyama and the SPD-preserving step, per path and on lanes;
* :mod:`.masked_lanes` — the masked drift and noise on lanes (the complete-mask ones are in
  :mod:`sde.coefficients`, the per-path masked ones in :mod:`sde.masked_coefficients`);
* :mod:`.loops` — the lane loop and the per-path loop, built from compile-time choices;
* :mod:`.ode` — RK4 for ``method="ode"``.

This module holds the Python entry points: validated arrays in, preallocated output filled
(docs/developing.md, "The integrator core").
"""
import concurrent.futures
import math
import os

import numba
import numpy as np

from .. import pcg64
from ..coefficients import NL
from .loops import (COMPLETE, EULER, LANES_MAX_M, MASKED, PCG64, SPD, SUPPLIED, lanes_kernel,
                    path_kernel)
from .noise_sources import normals_per_step
from .ode import integrate_ode
from .state import ALIVE, BLEW_UP, LEFT_CONE, factor, used_blocks
from .steps import factor_from_qr

__all__ = ["ALIVE", "LEFT_CONE", "BLEW_UP", "EULER", "SPD", "LANES_MAX_M", "simulate_blocks",
           "simulate_blocks_per_path", "integrate_supplied", "integrate_normals", "normals_per_step",
           "increments_to_normals", "integrate_ode", "factor_from_qr",
           "no_mask"]

STEPS = {"euler": EULER, "spd": SPD}


def no_mask(m):
    """Row lists standing in for the complete mask (never read by its kernels)."""
    return np.zeros((m, 1), dtype=np.int64), np.zeros(m, dtype=np.int64)


def _coef_kind(rows, m):
    if rows is None:
        return COMPLETE, no_mask(m)
    idx, cnt = rows
    return MASKED, (np.ascontiguousarray(idx, dtype=np.int64),
                    np.ascontiguousarray(cnt, dtype=np.int64))


def simulate_blocks(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps, bound,
                    out_V, out_status, out_death, *, method="euler", rows=None):
    """Integrate RNG blocks of paths (the kernel :func:`sde.simulate` runs), in lanes.

    gens: tuple of ``numpy.random.Generator``, one per block; block k owns local paths
    ``block_start[k] : block_start[k] + block_len[k]`` and draws from ``gens[k]`` (its PCG64
    stream inlined, :mod:`sde.pcg64`; the advanced states are written back). ``method``:
    ``"euler"`` or ``"spd"``; ``rows``: the mask's row lists ``(idx, cnt)``
    (:func:`sde.masks.row_lists`), None for the complete mask. ``out_V`` (paths, n_save, m, m)
    must be NaN-filled, ``out_status`` zeros, ``out_death`` +inf. For m > :data:`LANES_MAX_M`
    the per-path loop runs (the same bits).
    """
    m = V0.shape[0]
    if m > LANES_MAX_M:
        simulate_blocks_per_path(gens, block_start, block_len, V0, coef, dt, n_steps,
                                 save_steps, bound, out_V, out_status, out_death,
                                 method=method, rows=rows)
        return
    kind, (idx, cnt) = _coef_kind(rows, m)
    rng = pcg64.states(gens)
    normals = np.zeros((1, 1, 1))
    n_groups = (used_blocks(block_len) + NL - 1) // NL
    run_lanes(lanes_kernel(m, STEPS[method], kind, PCG64), n_groups,
              (rng, normals, block_start, block_len, V0, factor(V0), coef, idx, cnt, dt,
               n_steps, save_steps, bound, out_V, out_status, out_death), kind)
    pcg64.write_back(gens, rng)


def simulate_blocks_per_path(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                             bound, out_V, out_status, out_death, *, method="euler",
                             rows=None):
    """:func:`simulate_blocks` one path at a time per thread (the test oracle of the lanes,
    and the kernel above :data:`LANES_MAX_M`): the same arguments and bits."""
    kind, (idx, cnt) = _coef_kind(rows, V0.shape[0])
    rng = pcg64.states(gens)
    path_kernel(STEPS[method], kind)(rng, block_start, block_len, V0, coef, idx, cnt, dt,
                                     n_steps, save_steps, bound, out_V, out_status, out_death)
    pcg64.write_back(gens, rng)


def increments_to_normals(dW, dt, has_att):
    """Brownian increments as the unit normals the kernels read (:func:`integrate_normals`).

    dW: (paths, n_steps, 2, m, m), ``dW[p, s, 0]`` = G and ``dW[p, s, 1]`` = G' of step s,
    entries ~ N(0, dt); the symmetric noise is ``Z = (G + Gᵀ)/sqrt 2``. Returns (paths,
    n_steps, :func:`normals_per_step`): per step Z's upper triangle row-major (diagonal first
    in each row) over sqrt(2 dt) on the diagonal and sqrt(dt) off it, then G'/sqrt(dt)
    row-major when ``has_att``. The kernel multiplies back, so a step's noise equals the
    increments' to round-off (one rounding per entry each way).
    """
    dW = np.asarray(dW, dtype=np.float64)
    m = dW.shape[-1]
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    a, b = np.triu_indices(m)
    G = dW[:, :, 0]
    Z = (G[..., a, b] + G[..., b, a]) / math.sqrt(2.0)
    parts = [Z / np.where(a == b, sq2, sq)]
    if has_att:
        parts.append(dW[:, :, 1].reshape(dW.shape[0], dW.shape[1], m * m) / sq)
    return np.ascontiguousarray(np.concatenate(parts, axis=-1))


def integrate_supplied(V0, coef, dt, dW, bound, out_V, out_status, out_death, *,
                       method="euler", rows=None):
    """Integrate paths driven by Brownian increments (the sdeint cross-check, coupled runs):
    :func:`increments_to_normals`, then :func:`integrate_normals` (the lane kernels
    :func:`simulate_blocks` runs). dW: (paths, n_steps, 2, m, m) as there; other arguments
    as :func:`integrate_normals`."""
    normals = increments_to_normals(dW, dt, coef.att_noise != 0.0)
    integrate_normals(V0, coef, dt, normals, bound, out_V, out_status, out_death,
                      method=method, rows=rows)


def integrate_normals(V0, coef, dt, normals, bound, out_V, out_status, out_death, *,
                      method="euler", rows=None):
    """Integrate paths driven by supplied unit normals through the lane kernel
    :func:`simulate_blocks` runs, its PCG64 draw replaced by reading ``normals``.

    normals: (paths, n_steps, :func:`normals_per_step` (m, attention noise)), path p's step s
    reading ``normals[p, s]`` where the PCG64 kernel draws its step's normals (same order,
    same scaling, :mod:`sde._kernels.noise_sources`): fed the draws of a stream it gives the
    PCG64 kernel's bits. ``out_V`` (paths, n_steps + 1, m, m), NaN-filled: every step is
    saved; ``out_status`` zeros, ``out_death`` +inf. ``method``, ``rows`` as
    :func:`simulate_blocks`. Every path is a block of its own.
    """
    V0 = np.ascontiguousarray(V0, dtype=np.float64)
    normals = np.ascontiguousarray(normals, dtype=np.float64)
    n_paths, n_steps = normals.shape[0], normals.shape[1]
    m = V0.shape[0]
    need = normals_per_step(m, coef.att_noise != 0.0)
    if normals.ndim != 3 or normals.shape[2] != need:
        raise ValueError(f"normals must be (paths, steps, {need}) for m = {m}, got "
                         f"{normals.shape}")
    kind, (idx, cnt) = _coef_kind(rows, m)
    starts = np.arange(n_paths, dtype=np.int64)
    lens = np.ones(n_paths, dtype=np.int64)
    rng = np.zeros((n_paths, 4), dtype=np.uint64)
    save = np.arange(n_steps + 1, dtype=np.int64)
    n_groups = (n_paths + NL - 1) // NL
    run_lanes(lanes_kernel(m, STEPS[method], kind, SUPPLIED), n_groups,
              (rng, normals, starts, lens, V0, factor(V0), coef, idx, cnt, float(dt), n_steps,
               save, bound, out_V, out_status, out_death), kind)


def run_lanes(kernel, n_groups, args, kind=MASKED):
    """Run a lane kernel over lane groups ``0:n_groups``: compiled on this thread with numba's
    SLP vectoriser on (``numba.config.SLP_VECTORIZE`` is read at each compilation; numba
    leaves it off by default), then every group on the thread pool (:func:`_run_groups`).

    A complete-mask kernel (``kind`` :data:`COMPLETE`) is compiled with LLVM's loop
    vectoriser off: its lane loops (``for l in range(NL)``, fully unrolled) are packed by the
    SLP vectoriser, where the loop vectoriser packed the loop around them (over rows or
    columns, with gathers and scatters; the drift and the noise took 20–25 % longer at m = 8).
    Neither reorders a sum: the bits are the same."""
    old = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    if kind == COMPLETE:
        numba.config.LOOP_VECTORIZE = 0
    try:
        kernel(0, 0, *args)  # compiles (once per kernel) on this thread; runs nothing
    finally:
        numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = old
    _run_groups(kernel, 0, n_groups, args)


_POOL = {}  # (process id, workers) -> ThreadPoolExecutor; a forked child makes its own


def _run_groups(kernel, g0, g1, args):
    """Lane groups ``g0:g1`` on ``numba.get_num_threads()`` Python threads (the kernel is nogil).

    Results do not depend on the thread count: each group writes its own paths."""
    n_threads = min(numba.get_num_threads(), g1 - g0)
    if n_threads <= 1:
        if g1 > g0:
            kernel(g0, g1, *args)
        return
    key = (os.getpid(), n_threads)
    pool = _POOL.get(key)
    if pool is None:
        pool = _POOL[key] = concurrent.futures.ThreadPoolExecutor(max_workers=n_threads)
    futures = [pool.submit(kernel, g, g + 1, *args) for g in range(g0, g1)]
    for f in futures:
        f.result()
