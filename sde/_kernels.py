"""Private numba kernels: Euler–Maruyama and RK4 path loops over preallocated output.

Pure functions: inputs in, preallocated output filled, a status code and a death time
per path. The public wrapper is :func:`sde.simulate.simulate`.

Status codes (also in :mod:`sde.schema`): 0 alive, 1 left the PD cone (Cholesky of the
new state failed), 2 blew up (non-finite entry or ``|V_ab| > bound``).

Random numbers, per step, from the path's block Generator, in this order: the
m(m+1)/2 entries of ``Z`` (row-major upper triangle, diagonal first in each row;
diagonal N(0, 2), off-diagonal N(0, 1)), then, when the model has attention, the m²
entries of ``G'`` row-major. All are scaled by sqrt(dt).
"""
import concurrent.futures
import math
import os

import numba
import numpy as np
from numba import njit, prange

from . import pcg64
from .coefficients import (NL, cholesky_into, cholesky_lanes, drift_into, drift_lanes,
                           noise_into, noise_lanes)

ALIVE, LEFT_CONE, BLEW_UP = 0, 1, 2


@njit(cache=True)
def used_blocks(block_len):
    """Blocks that hold paths: they come first, padding (length 0) after
    (:func:`sde.runs.kernel_chunks`). Work is split over these only, so that a chunk of fewer
    blocks than the padded tuple still uses every thread (a static split of the padded range
    gave one thread all the paths below 8192)."""
    n = 0
    while n < block_len.shape[0] and block_len[n] > 0:
        n += 1
    return n


@njit(cache=True, inline="always")
def _check_state(Vn, bound, Ln):
    """Status of a new state: 2 if non-finite or above bound, 1 if not PD, else 0 (Ln filled)."""
    m = Vn.shape[0]
    for a in range(m):
        for b in range(m):
            x = Vn[a, b]
            if not (abs(x) <= bound):  # catches NaN and inf too
                return BLEW_UP
    if not cholesky_into(Vn, Ln):
        return LEFT_CONE
    return ALIVE


@njit(cache=True)
def _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln):
    """One Euler–Maruyama step ``V → Vn`` (and its factor ``Ln``); returns a status code.

    ``Z`` and ``Gp`` are the step's noise increments (already scaled by sqrt(dt)).
    """
    m = V.shape[0]
    drift_into(V, coef, bdrift)
    noise_into(L, Z, Gp, coef, scratch, Vn)
    for a in range(m):
        for b in range(a + 1):
            x = 0.5 * ((Vn[a, b] + bdrift[a, b] * dt) + (Vn[b, a] + bdrift[b, a] * dt)) + V[a, b]
            Vn[a, b] = x
            Vn[b, a] = x
    return _check_state(Vn, bound, Ln)


@njit(cache=True, inline="always")
def draw_increments(gen, sq, sq2, has_att, Z, Gp):
    """One step's noise from ``gen`` in the package's order (module docstring): Z, then G'."""
    m = Z.shape[0]
    for a in range(m):
        Z[a, a] = sq2 * gen.standard_normal()
        for b in range(a + 1, m):
            z = sq * gen.standard_normal()
            Z[a, b] = z
            Z[b, a] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                Gp[a, b] = sq * gen.standard_normal()


@njit(cache=True, inline="always")
def supplied_increments(dW, p, s, Z, Gp):
    """Z = (G + Gᵀ)/sqrt 2 and G' of step ``s`` of path ``p`` from supplied increments."""
    m = Z.shape[0]
    r2 = 1.0 / math.sqrt(2.0)
    for a in range(m):
        for b in range(m):
            Z[a, b] = r2 * (dW[p, s, 0, a, b] + dW[p, s, 0, b, a])
            Gp[a, b] = dW[p, s, 1, a, b]


@njit(cache=True)
def _workspace(m):
    """Per-path work arrays of one EM integration: V, L, Vn, Ln, Z, G' (zeroed), b, scratch."""
    return (np.empty((m, m)), np.empty((m, m)), np.empty((m, m)), np.empty((m, m)),
            np.empty((m, m)), np.zeros((m, m)), np.empty((m, m)), np.empty((3, m, m)))


@njit(cache=True, parallel=True)
def simulate_blocks_scalar(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                    bound, out_V, out_status, out_death):
    """Euler–Maruyama over RNG blocks of paths, one path at a time per thread.

    The reference for :func:`simulate_blocks` (bit-identical results; tests/test_lanes.py)
    and the benchmark's "per-path kernel". gens: tuple of ``numpy.random.Generator``, one per
    block; block k owns local paths
    ``block_start[k] : block_start[k] + block_len[k]``. ``out_V`` (paths, n_save, m, m)
    must be NaN-filled, ``out_status`` zeros, ``out_death`` +inf.
    """
    m = V0.shape[0]
    has_att = coef.att_noise != 0.0
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    n_save = save_steps.shape[0]
    for k in prange(used_blocks(block_len)):
        gen = gens[k]
        V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
        for p in range(block_start[k], block_start[k] + block_len[k]):
            V[:, :] = V0
            cholesky_into(V, L)
            j = 0
            if save_steps[0] == 0:
                out_V[p, 0] = V
                j = 1
            for s in range(1, n_steps + 1):
                draw_increments(gen, sq, sq2, has_att, Z, Gp)
                st = _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln)
                if st != ALIVE:
                    out_status[p] = st
                    out_death[p] = s * dt
                    break
                V, Vn = Vn, V
                L, Ln = Ln, L
                if j < n_save and s == save_steps[j]:
                    out_V[p, j] = V
                    j += 1


@njit(cache=True)
def integrate_supplied(V0, coef, dt, dW, bound, out_V, out_status, out_death):
    """Euler–Maruyama driven by supplied increments (reference cross-checks).

    dW: (paths, n_steps, 2, m, m), ``dW[p, s, 0]`` = G and ``dW[p, s, 1]`` = G' of the
    step, each entry ~ N(0, dt); the symmetric noise is ``Z = (G + Gᵀ)/sqrt 2``.
    out_V: (paths, n_steps + 1, m, m), NaN-filled; every step is saved.
    Shares :func:`_em_step` with :func:`simulate_blocks`.
    """
    n_paths, n_steps = dW.shape[0], dW.shape[1]
    m = V0.shape[0]
    V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
    for p in range(n_paths):
        V[:, :] = V0
        cholesky_into(V, L)
        out_V[p, 0] = V
        for s in range(n_steps):
            supplied_increments(dW, p, s, Z, Gp)
            st = _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln)
            if st != ALIVE:
                out_status[p] = st
                out_death[p] = (s + 1) * dt
                break
            V, Vn = Vn, V
            L, Ln = Ln, L
            out_V[p, s + 1] = V


@njit(cache=True)
def integrate_ode(V0, coef, dt, n_steps, save_steps, bound, out_V):
    """Classical RK4 on ``dV/dt = b(V)`` (the width-first limit); returns (status, death time).

    out_V: (n_save, m, m), NaN-filled. The same death rules as the SDE apply (a cubic
    drift can blow up in finite time).
    """
    m = V0.shape[0]
    V = V0.copy()
    L = np.empty((m, m))
    k1 = np.empty((m, m))
    k2 = np.empty((m, m))
    k3 = np.empty((m, m))
    k4 = np.empty((m, m))
    n_save = save_steps.shape[0]
    j = 0
    if save_steps[0] == 0:
        out_V[0] = V
        j = 1
    for s in range(1, n_steps + 1):
        drift_into(V, coef, k1)
        drift_into(V + 0.5 * dt * k1, coef, k2)
        drift_into(V + 0.5 * dt * k2, coef, k3)
        drift_into(V + dt * k3, coef, k4)
        Vn = V + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        Vn = 0.5 * (Vn + Vn.T)
        st = _check_state(Vn, bound, L)
        if st != ALIVE:
            return st, s * dt
        V = Vn
        if j < n_save and s == save_steps[j]:
            out_V[j] = V
            j += 1
    return ALIVE, np.inf


# ------------------------------------------------------------------ lanes of paths

#: above this m the per-path kernel is used (lanes measured 0.51 vs 0.36 of the RNG floor
#: at m = 16; larger m are untested: the lane workspace, 15 m² NL doubles, outgrows L2).
LANES_MAX_M = 16


def simulate_blocks(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps, bound,
                    out_V, out_status, out_death):
    """Euler–Maruyama over RNG blocks, NL blocks at a time as vector lanes (the fast kernel).

    Same arguments and bit-identical results as :func:`simulate_blocks_scalar`. Lane l of a
    group follows RNG block ``b0 + l``: it integrates that block's paths in order, drawing
    from the block's Generator in the package's order, and starts the block's next path
    after a death or at T — so every path sees the draws it sees in the scalar kernel.

    The kernel is compiled once per m (:func:`lanes_kernel`) with m a compile-time constant,
    and every per-path (m, m) array is an (m, m, NL) slice of ONE workspace array
    (``_N_SLOTS``, m, m, NL) with the lane axis innermost. LLVM then sees every access as a
    constant offset from one base pointer, proves the slices disjoint, and emits packed
    (SIMD) arithmetic across the NL lanes (``vaddpd``/``vmulpd``/``vdivpd`` on ymm registers
    on AVX2; docs/benchmarks.md). numba's SLP vectoriser is switched on for this kernel's
    compilation only (``numba.config.SLP_VECTORIZE`` is read at each compilation; numba
    leaves it off by default). Vectorising across lanes reorders no sum: no fastmath.

    Threads: the kernel is ``nogil`` and takes a range of lane groups; the groups run on
    ``numba.get_num_threads()`` Python threads (:func:`_run_groups`). A ``prange`` over the
    groups would make numba's parfor passes analyse the whole inlined step, which tripled
    the cold compile time. Results do not depend on the thread count (each group writes its
    own paths). For m > :data:`LANES_MAX_M` the per-path kernel runs (the same bits).
    """
    m = V0.shape[0]
    if m > LANES_MAX_M:
        simulate_blocks_scalar(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                               bound, out_V, out_status, out_death)
        return
    run_lanes(lanes_kernel(m), gens, block_start, block_len, V0, coef, dt, n_steps,
              save_steps, bound, out_V, out_status, out_death)


def run_lanes(kernel, gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
              bound, out_V, out_status, out_death):
    """Run a per-m lane kernel (Euler's or the SPD scheme's) over the lane groups of the
    blocks that hold paths: compiled on this thread with the SLP vectoriser on, then
    every group on the thread pool (:func:`_run_groups`).

    The kernel draws from the Generators' PCG64 states copied into a (blocks, 4) uint64
    array (:mod:`sde.pcg64`, the same stream inlined); the advanced states are written back."""
    L0 = _factor(V0)
    n_groups = (used_blocks(block_len) + NL - 1) // NL
    rng = pcg64.states(gens)
    args = (rng, block_start, block_len, V0, L0, coef, dt, n_steps, save_steps, bound,
            out_V, out_status, out_death)
    old = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        kernel(0, 0, *args)  # compiles (once per m) on this thread; runs nothing
    finally:
        numba.config.SLP_VECTORIZE = old
    _run_groups(kernel, 0, n_groups, args)
    pcg64.write_back(gens, rng)


def _factor(V0):
    """Cholesky factor of V0 (PD, checked by the caller) with the kernels' own routine."""
    L0 = np.zeros_like(V0)
    cholesky_into(V0, L0)
    return L0


_POOL = {}  # (process id, workers) -> ThreadPoolExecutor; a forked child makes its own


def _run_groups(kernel, g0, g1, args):
    """Lane groups ``g0:g1`` on ``numba.get_num_threads()`` Python threads (the kernel is nogil)."""
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


# workspace slots of the lane kernel: one (_N_SLOTS, m, m, NL) array; the four slots from _X
# hold the drift's (m, NL) and (NL,) work vectors
_V, _L, _VN, _LN, _Z, _GP, _B, _N, _T, _K, _X = range(11)
_N_SLOTS = _X + 4

_LANE_KERNELS = {}


def lanes_kernel(m):
    """The lane kernel for token count ``m`` (a dispatcher compiled with m as a constant).

    Built once per process and m by :func:`_make_lanes_kernel`; the closure captures only
    the int m, so numba's on-disk cache (``cache=True``) keys it by m and reuses it across
    processes.
    """
    m = int(m)
    k = _LANE_KERNELS.get(m)
    if k is None:
        k = _LANE_KERNELS[m] = _make_lanes_kernel(m)
    return k


@njit(cache=True, inline="always")
def _start_path(V, L, V0, L0, l, p, out_V, save0):
    m = V0.shape[0]
    for a in range(m):
        for b in range(m):
            V[a, b, l] = V0[a, b]
            L[a, b, l] = L0[a, b]
    if save0:
        for a in range(m):
            for b in range(m):
                out_V[p, 0, a, b] = V0[a, b]


@njit(cache=True, inline="always")
def draw_lane(rng, k, l, sq, sq2, has_att, Z, Gp):
    """One step's noise for lane ``l`` from PCG64 state row ``k`` of ``rng`` (blocks, 4), in
    the package's order (module docstring; as :func:`draw_increments`). The state stays in
    registers for the step's draws and is stored back once."""
    m = Z.shape[0]
    hi, lo, inc_hi, inc_lo = rng[k, 0], rng[k, 1], rng[k, 2], rng[k, 3]
    for a in range(m):
        x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
        Z[a, a, l] = sq2 * x
        for b in range(a + 1, m):
            x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
            z = sq * x
            Z[a, b, l] = z
            Z[b, a, l] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
                Gp[a, b, l] = sq * x
    rng[k, 0] = hi
    rng[k, 1] = lo


@njit(cache=True, inline="always")
def blew_lanes(Vn, bound, count, blew):
    """``blew[l]``: an entry of the symmetric ``Vn[:, :, l]`` is non-finite or above ``bound``
    in absolute value (status 2, as :func:`_check_state`). The lower triangle is tested, and
    the failures are counted in the float lanes of ``count`` (NL,): this vectorises, and a
    running boolean OR did not (8 % of the Euler step at m = 3)."""
    m = Vn.shape[0]
    for l in range(NL):
        count[l] = 0.0
    for a in range(m):
        for b in range(a + 1):
            for l in range(NL):
                count[l] = count[l] + (0.0 if abs(Vn[a, b, l]) <= bound else 1.0)
    for l in range(NL):
        blew[l] = count[l] != 0.0


def _make_lanes_kernel(M):
    """Euler lane kernel with ``M`` (the token count) fixed at compile time."""
    @njit(cache=True, nogil=True, error_model="numpy")
    def _simulate_lanes(g0, g1, rng, block_start, block_len, V0, L0, coef, dt, n_steps,
                        save_steps, bound, out_V, out_status, out_death):
        has_att = coef.att_noise != 0.0
        sq = math.sqrt(dt)
        sq2 = math.sqrt(2.0) * sq
        n_save = save_steps.shape[0]
        save0 = save_steps[0] == 0
        j0 = 1 if save0 else 0
        n_blocks = rng.shape[0]
        for g in range(g0, g1):
            m = M
            b0 = g * NL
            # one allocation: every slot is a constant offset from one base pointer
            W = np.zeros((_N_SLOTS, m, m, NL))
            V = W[_V]
            L = W[_L]
            Vn = W[_VN]
            Ln = W[_LN]
            Z = W[_Z]
            Gp = W[_GP]
            bd = W[_B]
            vec = W[_X:_X + 4, 0]       # (4, m, NL)
            sc = W[_X:_X + 4, 1, 0]     # (4, NL); m >= 2; W[_X, 1, 1] is blew_lanes' count
            ok = np.ones(NL, dtype=np.bool_)
            blew = np.zeros(NL, dtype=np.bool_)
            p = np.zeros(NL, dtype=np.int64)
            pend = np.zeros(NL, dtype=np.int64)
            step = np.zeros(NL, dtype=np.int64)
            jsave = np.zeros(NL, dtype=np.int64)
            active = np.zeros(NL, dtype=np.bool_)
            n_active = 0
            for l in range(NL):
                blk = b0 + l
                _start_path(V, L, V0, L0, l, 0, out_V, False)
                if blk < n_blocks and block_len[blk] > 0:
                    p[l] = block_start[blk]
                    pend[l] = block_start[blk] + block_len[blk]
                    active[l] = True
                    n_active += 1
                    _start_path(V, L, V0, L0, l, p[l], out_V, save0)
                    jsave[l] = j0
            while n_active > 0:
                for l in range(NL):
                    if active[l]:
                        draw_lane(rng, b0 + l, l, sq, sq2, has_att, Z, Gp)
                # the Euler step on all lanes (as _em_step)
                drift_lanes(V, coef, bd, vec, sc)
                noise_lanes(L, Z, Gp, coef, W[_N], W[_T], W[_K], vec[3], Vn)
                for a in range(m):
                    for b in range(a + 1):
                        for l in range(NL):
                            x = (0.5 * ((Vn[a, b, l] + bd[a, b, l] * dt)
                                        + (Vn[b, a, l] + bd[b, a, l] * dt)) + V[a, b, l])
                            Vn[a, b, l] = x
                            Vn[b, a, l] = x
                blew_lanes(Vn, bound, W[_X, 1, 1], blew)
                cholesky_lanes(Vn, Ln, ok)
                # the new state on every lane (a dead or idle lane is restarted below)
                for a in range(m):
                    for b in range(m):
                        for l in range(NL):
                            V[a, b, l] = Vn[a, b, l]
                            L[a, b, l] = Ln[a, b, l]
                for l in range(NL):
                    if not active[l]:
                        _start_path(V, L, V0, L0, l, 0, out_V, False)  # idle: stay at V0
                        continue
                    step[l] += 1
                    s = step[l]
                    st = BLEW_UP if blew[l] else (LEFT_CONE if not ok[l] else ALIVE)
                    done = False
                    if st != ALIVE:
                        out_status[p[l]] = st
                        out_death[p[l]] = s * dt
                        done = True
                    else:
                        j = jsave[l]
                        if j < n_save and s == save_steps[j]:
                            for a in range(m):
                                for b in range(m):
                                    out_V[p[l], j, a, b] = V[a, b, l]
                            jsave[l] = j + 1
                        if s == n_steps:
                            done = True
                    if done:
                        p[l] += 1
                        step[l] = 0
                        if p[l] < pend[l]:
                            _start_path(V, L, V0, L0, l, p[l], out_V, save0)
                            jsave[l] = j0
                        else:
                            active[l] = False
                            n_active -= 1
                            _start_path(V, L, V0, L0, l, 0, out_V, False)

    return _simulate_lanes
