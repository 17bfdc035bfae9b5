"""Private numba kernels of the SPD-preserving scheme (``method="spd"``, docs/theory.md §4.7).

One step, from ``V = L Lᵀ`` (``L`` lower triangular) and the same increments as
Euler–Maruyama (``Z``, ``G'`` drawn in the same order from the same Generators, see
:mod:`sde._kernels`):

    A  = L⁻¹ b(V) L⁻ᵀ                                (whitened drift)
    N  = sqrt(a_lin) Z + c (G' K + K G'ᵀ)            (whitened noise, §4.1)
    M  = A Δt + N − ½ C Δt,   C = E[N²]/Δt           (Itô correction, coefficients.ito_correction_into)
    E  = I + M/2 + M²/8                              (eigenvalues ≥ ½: E is SPD for every M)
    V' = (L E)(L E)ᵀ                                 (a congruence: SPD, V' ⪰ V/4)

``E² = I + M + M²/2 + O(M³)`` is the second-order expansion of ``exp(M)``, so the step has the
mean ``b Δt`` and the covariance ``Σ Δt`` of the Euler step to O(Δt²): weak order 1.

Status: V' is positive definite by construction, so status 1 never occurs. A state with a
non-finite entry or ``|V_ab| > bound`` is status 2 (blew up). The new factor is the Cholesky
factor of V'; when round-off makes that fail (V' so ill-conditioned that the float Cholesky
breaks down), it is taken from a Householder QR of ``(L E)ᵀ`` instead, which always succeeds.
"""
import math

import numpy as np
from numba import njit, prange

from ._kernels import (ALIVE, BLEW_UP, LANES_MAX_M, _start_path, blew_lanes, draw_increments,
                       draw_lane, run_lanes, supplied_increments, used_blocks)
from .coefficients import (NL, cholesky_into, cholesky_lanes, drift_into, drift_lanes,
                           ito_correction_into, ito_correction_lanes, whitened_noise_into,
                           whitened_noise_lanes)


@njit(cache=True, inline="always")
def _solve_lower_cols(L, B, X):
    """X = L⁻¹ B (forward substitution, column by column; L lower triangular)."""
    m = L.shape[0]
    for j in range(m):
        for i in range(m):
            acc = B[i, j]
            for k in range(i):
                acc -= L[i, k] * X[k, j]
            X[i, j] = acc / L[i, i]


@njit(cache=True)
def factor_from_qr(F, Ln, R):
    """Lower-triangular ``Ln`` with ``Ln Lnᵀ = F Fᵀ`` from a Householder QR of ``Fᵀ``.

    ``Fᵀ = Q R`` gives ``F Fᵀ = Rᵀ R``; ``Ln = Rᵀ`` with its columns' signs made so that the
    diagonal is ≥ 0. Never fails (a zero diagonal entry is possible only if F is singular to
    working precision). ``R`` is (m, m) work space.
    """
    m = F.shape[0]
    for i in range(m):
        for j in range(m):
            R[i, j] = F[j, i]
    v = np.empty(m)
    for k in range(m):
        norm = 0.0
        for i in range(k, m):
            norm += R[i, k] * R[i, k]
        norm = math.sqrt(norm)
        if norm == 0.0:
            continue
        alpha = -norm if R[k, k] >= 0.0 else norm
        for i in range(m):
            v[i] = 0.0
        v[k] = R[k, k] - alpha
        for i in range(k + 1, m):
            v[i] = R[i, k]
        vv = 0.0
        for i in range(k, m):
            vv += v[i] * v[i]
        if vv == 0.0:
            continue
        for j in range(k, m):
            d = 0.0
            for i in range(k, m):
                d += v[i] * R[i, j]
            f = 2.0 * d / vv
            for i in range(k, m):
                R[i, j] -= f * v[i]
    for i in range(m):
        sgn = -1.0 if R[i, i] < 0.0 else 1.0
        for j in range(m):
            Ln[j, i] = sgn * R[i, j] if j >= i else 0.0


@njit(cache=True)
def spd_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, W, Vn, Ln):
    """One SPD-preserving step ``V → Vn`` (and its factor ``Ln``); returns a status code.

    ``Z`` and ``Gp`` are the step's increments (already scaled by sqrt(dt)), as for
    :func:`sde._kernels._em_step`. ``scratch`` is (3, m, m), ``W`` (4, m, m).
    Returns 0 (alive) or 2 (blew up); never 1.
    """
    m = V.shape[0]
    drift_into(V, coef, bdrift)
    whitened_noise_into(L, Z, Gp, coef, scratch)   # N = scratch[0], K = scratch[2]
    N = scratch[0]
    K = scratch[2]
    X = W[0]
    M = W[1]
    E = W[2]
    F = W[3]
    # A = L⁻¹ b L⁻ᵀ: X = L⁻¹ b, then A = L⁻¹ Xᵀ (b symmetric); A goes into E
    _solve_lower_cols(L, bdrift, X)
    for i in range(m):
        for j in range(m):
            F[i, j] = X[j, i]
    _solve_lower_cols(L, F, E)
    ito_correction_into(K, coef, X)                  # C into X
    for i in range(m):
        for j in range(i + 1):
            x = (0.5 * (E[i, j] + E[j, i]) * dt + 0.5 * (N[i, j] + N[j, i])
                 - 0.5 * dt * X[i, j])
            M[i, j] = x
            M[j, i] = x
    # E = I + M/2 + M²/8
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(m):
                acc += M[i, k] * M[k, j]
            x = 0.5 * M[i, j] + 0.125 * acc
            if i == j:
                x += 1.0
            E[i, j] = x
            E[j, i] = x
    # F = L E
    for i in range(m):
        for j in range(m):
            acc = 0.0
            for k in range(i + 1):
                acc += L[i, k] * E[k, j]
            F[i, j] = acc
    # Vn = F Fᵀ
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(m):
                acc += F[i, k] * F[j, k]
            Vn[i, j] = acc
            Vn[j, i] = acc
    for a in range(m):
        for b in range(m):
            if not (abs(Vn[a, b]) <= bound):  # catches NaN and inf too
                return BLEW_UP
    if not cholesky_into(Vn, Ln):
        factor_from_qr(F, Ln, X)
    return ALIVE


@njit(cache=True)
def _workspace_spd(m):
    """Per-path work arrays: V, L, Vn, Ln, Z, G' (zeroed), b, scratch (3, m, m), W (4, m, m)."""
    return (np.empty((m, m)), np.empty((m, m)), np.empty((m, m)), np.empty((m, m)),
            np.empty((m, m)), np.zeros((m, m)), np.empty((m, m)), np.empty((3, m, m)),
            np.empty((4, m, m)))


@njit(cache=True, parallel=True)
def simulate_blocks_spd_scalar(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                               bound, out_V, out_status, out_death):
    """The SPD scheme over RNG blocks, one path at a time per thread (the reference for the
    lanes of :func:`simulate_blocks_spd`; arguments as :func:`sde._kernels.simulate_blocks`)."""
    m = V0.shape[0]
    has_att = coef.att_noise != 0.0
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    n_save = save_steps.shape[0]
    for k in prange(used_blocks(block_len)):
        gen = gens[k]
        V, L, Vn, Ln, Z, Gp, bdrift, scratch, W = _workspace_spd(m)
        for p in range(block_start[k], block_start[k] + block_len[k]):
            V[:, :] = V0
            cholesky_into(V, L)
            j = 0
            if save_steps[0] == 0:
                out_V[p, 0] = V
                j = 1
            for s in range(1, n_steps + 1):
                draw_increments(gen, sq, sq2, has_att, Z, Gp)
                st = spd_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, W, Vn, Ln)
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
def integrate_supplied_spd(V0, coef, dt, dW, bound, out_V, out_status, out_death):
    """The SPD scheme driven by supplied increments (as :func:`sde._kernels.integrate_supplied`)."""
    n_paths, n_steps = dW.shape[0], dW.shape[1]
    m = V0.shape[0]
    V, L, Vn, Ln, Z, Gp, bdrift, scratch, W = _workspace_spd(m)
    for p in range(n_paths):
        V[:, :] = V0
        cholesky_into(V, L)
        out_V[p, 0] = V
        for s in range(n_steps):
            supplied_increments(dW, p, s, Z, Gp)
            st = spd_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, W, Vn, Ln)
            if st != ALIVE:
                out_status[p] = st
                out_death[p] = (s + 1) * dt
                break
            V, Vn = Vn, V
            L, Ln = Ln, L
            out_V[p, s + 1] = V


# ------------------------------------------------------------------ lanes of paths


def simulate_blocks_spd(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                        bound, out_V, out_status, out_death):
    """The SPD scheme over RNG blocks, NL blocks at a time as vector lanes.

    Bit-identical to :func:`simulate_blocks_spd_scalar` (tests/test_lanes_spd.py): the lane
    organisation of :func:`sde._kernels.simulate_blocks` (one RNG block per lane, the same
    draws in the same order, m a compile-time constant, one workspace with the lane axis
    innermost) around the operations of :func:`spd_step`, lane by lane in the same order. A
    lane whose new state fails the float Cholesky takes its factor from the QR fallback, as
    in :func:`spd_step`. For m > :data:`sde._kernels.LANES_MAX_M` the per-path kernel runs.
    """
    m = V0.shape[0]
    if m > LANES_MAX_M:
        simulate_blocks_spd_scalar(gens, block_start, block_len, V0, coef, dt, n_steps,
                                   save_steps, bound, out_V, out_status, out_death)
        return
    run_lanes(spd_lanes_kernel(m), gens, block_start, block_len, V0, coef, dt, n_steps,
              save_steps, bound, out_V, out_status, out_death)


_SPD_LANE_KERNELS = {}


def spd_lanes_kernel(m):
    """The SPD lane kernel for token count ``m`` (compiled with m a constant; cached per m)."""
    m = int(m)
    k = _SPD_LANE_KERNELS.get(m)
    if k is None:
        k = _SPD_LANE_KERNELS[m] = _make_spd_lanes_kernel(m)
    return k


# workspace slots: one (_N_SLOTS, m, m, NL) array; the four slots from _Q hold the drift's
# (m, NL) and (NL,) work vectors
(_V, _L, _VN, _LN, _Z, _GP, _B, _N, _T, _K, _X, _M, _E, _F, _Q) = range(15)
_N_SLOTS = _Q + 4


@njit(cache=True, inline="always")
def _solve_lower_lanes(L, B, X):
    """:func:`_solve_lower_cols` on lanes (X = L⁻¹ B; all (m, m, NL), X not B)."""
    m = L.shape[0]
    for j in range(m):
        for i in range(m):
            for l in range(NL):
                X[i, j, l] = B[i, j, l]
            for k in range(i):
                for l in range(NL):
                    X[i, j, l] -= L[i, k, l] * X[k, j, l]
            for l in range(NL):
                X[i, j, l] = X[i, j, l] / L[i, i, l]


def _make_spd_lanes_kernel(M):
    """SPD lane kernel with ``M`` (the token count) fixed at compile time."""
    @njit(cache=True, nogil=True, error_model="numpy")
    def _simulate_spd_lanes(g0, g1, rng, block_start, block_len, V0, L0, coef, dt, n_steps,
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
            W = np.zeros((_N_SLOTS, m, m, NL))
            V = W[_V]
            L = W[_L]
            Vn = W[_VN]
            Ln = W[_LN]
            Z = W[_Z]
            Gp = W[_GP]
            bd = W[_B]
            N = W[_N]
            K = W[_K]
            X = W[_X]
            Mw = W[_M]
            E = W[_E]
            F = W[_F]
            vec = W[_Q:_Q + 4, 0]       # (4, m, NL)
            sc = W[_Q:_Q + 4, 1, 0]     # (4, NL); m >= 2; W[_Q, 1, 1] is blew_lanes' count
            Fl = np.empty((m, m))       # QR fallback of one lane
            Ll = np.empty((m, m))
            Rl = np.empty((m, m))
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
                # the SPD step on all lanes (as spd_step)
                drift_lanes(V, coef, bd, vec, sc)
                whitened_noise_lanes(L, Z, Gp, coef, N, W[_T], K, vec[3])
                _solve_lower_lanes(L, bd, X)
                for i in range(m):
                    for j in range(m):
                        for l in range(NL):
                            F[i, j, l] = X[j, i, l]
                _solve_lower_lanes(L, F, E)
                ito_correction_lanes(K, coef, X, sc[3])
                for i in range(m):
                    for j in range(i + 1):
                        for l in range(NL):
                            x = (0.5 * (E[i, j, l] + E[j, i, l]) * dt
                                 + 0.5 * (N[i, j, l] + N[j, i, l]) - 0.5 * dt * X[i, j, l])
                            Mw[i, j, l] = x
                            Mw[j, i, l] = x
                for i in range(m):
                    for j in range(i + 1):
                        for l in range(NL):
                            E[i, j, l] = 0.0
                        for k in range(m):
                            for l in range(NL):
                                E[i, j, l] += Mw[i, k, l] * Mw[k, j, l]
                        for l in range(NL):
                            x = 0.5 * Mw[i, j, l] + 0.125 * E[i, j, l]
                            if i == j:
                                x += 1.0
                            E[i, j, l] = x
                            E[j, i, l] = x
                for i in range(m):
                    for j in range(m):
                        for l in range(NL):
                            F[i, j, l] = 0.0
                        for k in range(i + 1):
                            for l in range(NL):
                                F[i, j, l] += L[i, k, l] * E[k, j, l]
                for i in range(m):
                    for j in range(i + 1):
                        for l in range(NL):
                            Vn[i, j, l] = 0.0
                        for k in range(m):
                            for l in range(NL):
                                Vn[i, j, l] += F[i, k, l] * F[j, k, l]
                        for l in range(NL):
                            Vn[j, i, l] = Vn[i, j, l]
                blew_lanes(Vn, bound, W[_Q, 1, 1], blew)
                cholesky_lanes(Vn, Ln, ok)
                for l in range(NL):
                    if active[l] and not blew[l] and not ok[l]:
                        for a in range(m):
                            for b in range(m):
                                Fl[a, b] = F[a, b, l]
                        factor_from_qr(Fl, Ll, Rl)
                        for a in range(m):
                            for b in range(m):
                                Ln[a, b, l] = Ll[a, b]
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
                    done = False
                    if blew[l]:
                        out_status[p[l]] = BLEW_UP
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

    return _simulate_spd_lanes
