"""The integrator's path loops, each built by a factory from compile-time integers.

:func:`lanes_kernel` ``(m, step, coef, noise)`` builds the kernel users run: NL paths at once
as vector lanes, m a constant, with

* the step: :data:`EULER` or :data:`SPD` (:mod:`sde._kernels.steps`);
* the coefficients: :data:`COMPLETE` (:mod:`sde.coefficients`) or :data:`MASKED`
  (:mod:`sde._kernels.masked_lanes`, the mask's row lists passed as arguments);
* the noise source: :data:`PCG64` (the paths' inlined Generator streams) or :data:`SUPPLIED`
  (given unit normals in the stream's order, the cross-check's entry point)
  (:mod:`sde._kernels.noise_sources`).

:func:`path_kernel` ``(step, coef)`` builds the per-path loop (one path at a time per thread,
``prange`` over RNG blocks): the test oracle of the lanes, and the kernel for m above
:data:`LANES_MAX_M`. Both loops call the same steps and formulas and the same status rules
(:mod:`sde._kernels.state`).

The factories close over integers only and choose with ``if STEP == EULER:``; numba prunes
the untaken branches before typing, and its on-disk cache (``cache=True``) keys each kernel
by the integers, so it is reused across processes. (A step passed as a function argument or
captured as a function misses the cache in every new process.)
"""
import math

import numpy as np
from numba import njit, prange

from ..coefficients import (NL, attention_drift_lanes, cholesky_into, cholesky_lanes,
                            drift_into, drift_start_lanes, ito_correction_into,
                            ito_correction_lanes, noise_into, sandwich_lanes, whitened_noise_into,
                            whitened_noise_lanes)
from ..masked_coefficients import (masked_drift_work, masked_ito_correction_into, masked_noise_into,
                      masked_whitened_noise_into)
from .masked_lanes import (draw_lane_called, draw_lanes_called, key_prefix_rows,
                           masked_attention_drift_lanes, masked_noise_lanes)
from .noise_sources import draw_lane, supplied_lane
from .state import (ALIVE, BLEW_UP, LEFT_CONE, Slots, blew_lanes, blew_up, check_state,
                    start_path, used_blocks)
from .steps import (euler_update, euler_update_lanes, factor_from_qr, spd_update,
                    spd_update_lanes, whitened_drift, whitened_drift_lanes)

EULER, SPD = 0, 1
COMPLETE, MASKED = 0, 1
PCG64, SUPPLIED = 0, 1
INLINED_DRAW, CALLED_DRAW = 0, 1

#: above this m the per-path kernel is used (lanes measured 0.51 vs 0.36 of the RNG floor
#: at m = 16; larger m are untested: the lane workspace, ≥ 14 m² NL doubles, outgrows L2).
LANES_MAX_M = 16

_LANES = {}
_PATHS = {}


def lanes_kernel(m, step=EULER, coef=COMPLETE, noise=PCG64):
    """The lane kernel for ``(m, step, coef, noise)``, built once per process
    (:func:`_make_lanes_kernel`) and compiled on first call (or loaded from numba's cache)."""
    key = (int(m), int(step), int(coef), int(noise))
    k = _LANES.get(key)
    if k is None:
        k = _LANES[key] = _make_lanes_kernel(*key)
    return k


def path_kernel(step=EULER, coef=COMPLETE):
    """The per-path kernel for ``(step, coef)`` (:func:`_make_path_kernel`)."""
    key = (int(step), int(coef))
    k = _PATHS.get(key)
    if k is None:
        k = _PATHS[key] = _make_path_kernel(*key)
    return k


def draw_form(coef):
    """Where a kernel with coefficients ``coef`` draws its step's normals:
    :data:`INLINED_DRAW`, the draw (:func:`sde._kernels.noise_sources.draw_lane`, with
    :func:`sde.pcg64.standard_normal` fully inlined) inlined into the kernel, or
    :data:`CALLED_DRAW`, the same draw as a function of its own, one call per lane group
    and step (:func:`sde._kernels.masked_lanes.draw_lanes_called`; per path,
    :func:`sde._kernels.masked_lanes.draw_lane_called`). The complete mask inlines it; the
    masked kernels call it: the draw's two inlined copies of the ziggurat are otherwise
    compiled into the masked kernel, the larger one to compile (docs/benchmarks.md, "Compile
    time"). Both give the same draws, in the same order."""
    return CALLED_DRAW if coef == MASKED else INLINED_DRAW


def _make_lanes_kernel(M, STEP, COEF, NOISE):
    """The lane loop with m = ``M`` and the step, coefficients and noise source fixed.

    Lane l of lane group g follows RNG block ``g·NL + l``: it integrates that block's paths
    in order, drawing from the block's stream in the package's order, and starts the block's
    next path after a death or at T — so every path sees the draws it sees in the per-path
    kernel. With supplied normals every path is a block of its own and its step s reads
    ``normals[p, s]`` (the draws the stream would make). Idle lanes (no path left) stay at
    V0 and are never read.
    """
    DRAW = draw_form(COEF)
    S = Slots(STEP == SPD, COEF == MASKED)
    N_SLOTS, D, Q = S.n, S.D, S.Q
    XS, MS, ES, FS = S.X, S.M, S.E, S.F

    @njit(cache=True, nogil=True, error_model="numpy")
    def kernel(g0, g1, rng, normals, block_start, block_len, V0, L0, coef, idx, cnt, dt, n_steps,
               save_steps, bound, out_V, out_status, out_death):
        has_att = coef.att_noise != 0.0
        sq = math.sqrt(dt)
        sq2 = math.sqrt(2.0) * sq
        n_save = save_steps.shape[0]
        save0 = save_steps[0] == 0
        j0 = 1 if save0 else 0
        n_blocks = block_len.shape[0]
        pre = key_prefix_rows(idx, cnt)
        for g in range(g0, g1):
            m = M
            b0 = g * NL
            # one allocation: every slot is a constant offset from one base pointer
            W = np.zeros((N_SLOTS, m, m, NL))
            V = W[0]
            L = W[1]
            Vn = W[2]
            Ln = W[3]
            Z = W[4]
            Gp = W[5]
            bd = W[6]
            vec = W[Q:Q + 4, 0]       # (4, m, NL)
            sc = W[Q:Q + 4, 1, 0]     # (4, NL); m >= 2; W[Q, 1, 1] is blew_lanes' count
            # one array per dtype (each allocation of a new shape or dtype is a compile)
            Wl = np.empty((17, m, m))  # one lane's arrays (QR fallback, masked Itô term)
            Fl = Wl[14]
            Ll = Wl[15]
            Rl = Wl[16]
            flags = np.zeros((3, NL), dtype=np.bool_)
            ok = flags[0]             # set by cholesky_lanes before it is read
            blew = flags[1]
            active = flags[2]
            counters = np.zeros((4, NL), dtype=np.int64)
            p = counters[0]
            pend = counters[1]
            step = counters[2]
            jsave = counters[3]
            n_active = 0
            for l in range(NL):
                blk = b0 + l
                start_path(V, L, V0, L0, l, 0, out_V, False)
                if blk < n_blocks and block_len[blk] > 0:
                    p[l] = block_start[blk]
                    pend[l] = block_start[blk] + block_len[blk]
                    active[l] = True
                    n_active += 1
                    start_path(V, L, V0, L0, l, p[l], out_V, save0)
                    jsave[l] = j0
            while n_active > 0:
                if NOISE == PCG64 and DRAW == CALLED_DRAW:
                    draw_lanes_called(rng, b0, active, sq, sq2, has_att, Z, Gp)
                else:
                    for l in range(NL):
                        if active[l]:
                            if NOISE == PCG64:
                                draw_lane(rng, b0 + l, l, sq, sq2, has_att, Z, Gp)
                            else:
                                supplied_lane(normals, p[l], step[l], l, sq, sq2, has_att, Z,
                                              Gp)
                # the drift: the MLP's part (any mask), then attention's for the coefficients.
                # Composed here, not in a function: an inlined function is copied whole into
                # its caller, so a function that composed these would copy them twice
                # (docs/benchmarks.md, "Compile time").
                drift_start_lanes(V, coef, bd)
                if coef.att_drift != 0.0:
                    if COEF == MASKED:
                        masked_attention_drift_lanes(V, idx, cnt, pre, coef.att_drift, bd, W[D],
                                                     W[D + 1], W[D + 2], W[D + 3], W[D + 4],
                                                     W[D + 5])
                    else:
                        attention_drift_lanes(V, coef.att_drift, bd, vec, sc)
                # the step
                if STEP == EULER:
                    if COEF == MASKED:
                        masked_noise_lanes(L, V, Z, Gp, coef, idx, cnt, W[7], W[8], W[9],
                                           W[D + 4], Vn)
                    else:
                        whitened_noise_lanes(L, Z, Gp, coef, W[7], W[8], W[9], vec[3])
                        sandwich_lanes(L, W[7], W[8], Vn)
                    euler_update_lanes(V, bd, dt, Vn)
                else:
                    X = W[XS]
                    E = W[ES]
                    F = W[FS]
                    if COEF == MASKED:
                        # per lane, with the per-path functions (the same bits)
                        for l in range(NL):
                            for a in range(m):
                                for b in range(m):
                                    Ll[a, b] = L[a, b, l]
                                    Wl[0, a, b] = Z[a, b, l]
                                    Wl[1, a, b] = Gp[a, b, l]
                            masked_whitened_noise_into(Ll, Wl[0], Wl[1], coef, idx, cnt,
                                                       Wl[2:5], Fl)
                            masked_ito_correction_into(Ll, coef, idx, cnt, Rl, Wl[2:14])
                            for a in range(m):
                                for b in range(m):
                                    W[7, a, b, l] = Fl[a, b]
                                    W[8, a, b, l] = Rl[a, b]
                        whitened_drift_lanes(L, bd, X, F, E)
                        for a in range(m):
                            for b in range(m):
                                for l in range(NL):
                                    X[a, b, l] = W[8, a, b, l]
                    else:
                        whitened_noise_lanes(L, Z, Gp, coef, W[7], W[8], W[9], vec[3])
                        whitened_drift_lanes(L, bd, X, F, E)
                        ito_correction_lanes(W[9], coef, X, sc[3])
                    spd_update_lanes(L, W[7], dt, X, W[MS], E, F, Vn)
                blew_lanes(Vn, bound, W[Q, 1, 1], blew)
                cholesky_lanes(Vn, Ln, ok)
                if STEP == SPD:
                    for l in range(NL):
                        if active[l] and not blew[l] and not ok[l]:
                            for a in range(m):
                                for b in range(m):
                                    Fl[a, b] = W[FS, a, b, l]
                            factor_from_qr(Fl, Ll, Rl)
                            for a in range(m):
                                for b in range(m):
                                    Ln[a, b, l] = Ll[a, b]
                            ok[l] = True
                # the new state on every lane (a dead or idle lane is restarted below)
                for a in range(m):
                    for b in range(m):
                        for l in range(NL):
                            V[a, b, l] = Vn[a, b, l]
                            L[a, b, l] = Ln[a, b, l]
                for l in range(NL):
                    if not active[l]:
                        start_path(V, L, V0, L0, l, 0, out_V, False)  # idle: stay at V0
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
                            start_path(V, L, V0, L0, l, p[l], out_V, save0)
                            jsave[l] = j0
                        else:
                            active[l] = False
                            n_active -= 1
                            start_path(V, L, V0, L0, l, 0, out_V, False)

    return kernel


def _make_path_kernel(STEP, COEF):
    """The per-path loop with the step and coefficients fixed (PCG64 noise).

    Arguments as the lane kernel's from ``rng`` on (no ``normals``, no ``L0``). ``out_V`` (paths,
    n_save, m, m) must be NaN-filled, ``out_status`` zeros, ``out_death`` +inf.
    """
    DRAW = draw_form(COEF)

    @njit(cache=True, parallel=True)
    def kernel(rng, block_start, block_len, V0, coef, idx, cnt, dt, n_steps, save_steps,
               bound, out_V, out_status, out_death):
        m = V0.shape[0]
        has_att = coef.att_noise != 0.0
        sq = math.sqrt(dt)
        sq2 = math.sqrt(2.0) * sq
        n_save = save_steps.shape[0]
        for k in prange(used_blocks(block_len)):
            V = np.empty((m, m))
            L = np.empty((m, m))
            Vn = np.empty((m, m))
            Ln = np.empty((m, m))
            Z = np.empty((m, m))
            Gp = np.zeros((m, m))
            bd = np.empty((m, m))
            N = np.empty((m, m))
            work = np.empty((12, m, m))  # the noise's (3), then the drift's (5); the
            #                              masked Itô term's (12) after the noise
            S4 = np.empty((4, m, m))     # the SPD step's X, M, E, F
            Z1 = Z.reshape((m, m, 1))    # one-lane views for the shared draw
            Gp1 = Gp.reshape((m, m, 1))
            for p in range(block_start[k], block_start[k] + block_len[k]):
                V[:, :] = V0
                cholesky_into(V, L)
                j = 0
                if save_steps[0] == 0:
                    out_V[p, 0] = V
                    j = 1
                for s in range(1, n_steps + 1):
                    if DRAW == CALLED_DRAW:
                        draw_lane_called(rng, k, 0, sq, sq2, has_att, Z1, Gp1)
                    else:
                        draw_lane(rng, k, 0, sq, sq2, has_att, Z1, Gp1)
                    if COEF == MASKED:
                        masked_drift_work(V, coef, idx, cnt, bd, work[3:])
                    else:
                        drift_into(V, coef, bd)
                    if STEP == EULER:
                        if COEF == MASKED:
                            masked_noise_into(L, V, Z, Gp, coef, idx, cnt, work[:3], Vn)
                        else:
                            noise_into(L, Z, Gp, coef, work[:3], Vn)
                        euler_update(V, bd, dt, Vn)
                        st = check_state(Vn, bound, Ln)
                    else:
                        X = S4[0]
                        E = S4[2]
                        F = S4[3]
                        if COEF == MASKED:
                            masked_whitened_noise_into(L, Z, Gp, coef, idx, cnt, work[:3], N)
                            whitened_drift(L, bd, X, F, E)
                            masked_ito_correction_into(L, coef, idx, cnt, X, work)
                            spd_update(L, N, dt, X, S4[1], E, F, Vn)
                        else:
                            whitened_noise_into(L, Z, Gp, coef, work[:3])
                            whitened_drift(L, bd, X, F, E)
                            ito_correction_into(work[2], coef, X)
                            spd_update(L, work[0], dt, X, S4[1], E, F, Vn)
                        st = ALIVE
                        if blew_up(Vn, bound):
                            st = BLEW_UP
                        elif not cholesky_into(Vn, Ln):
                            factor_from_qr(F, Ln, X)
                    if st != ALIVE:
                        out_status[p] = st
                        out_death[p] = s * dt
                        break
                    V, Vn = Vn, V
                    L, Ln = Ln, L
                    if j < n_save and s == save_steps[j]:
                        out_V[p, j] = V
                        j += 1

    return kernel
