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

from ._kernels import ALIVE, BLEW_UP, draw_increments, supplied_increments
from .coefficients import (cholesky_into, drift_into, ito_correction_into,
                           whitened_noise_into)


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
def simulate_blocks_spd(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                        bound, out_V, out_status, out_death):
    """The SPD scheme over RNG blocks of paths (arguments as :func:`sde._kernels.simulate_blocks`)."""
    m = V0.shape[0]
    has_att = coef.att_noise != 0.0
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    n_save = save_steps.shape[0]
    for k in prange(len(gens)):
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
