"""The two steps, Euler–Maruyama and the SPD-preserving congruence, given a step's drift and
noise (from :mod:`sde.coefficients` or :mod:`sde.masked_coefficients`, chosen by the loop).

Euler–Maruyama: ``V' = V + b(V) Δt + noise``, symmetrised.

SPD-preserving step (docs/theory.md §4.7), from ``V = L Lᵀ`` and the whitened noise
``N = L⁻¹ noise L⁻ᵀ``::

    A  = L⁻¹ b(V) L⁻ᵀ                      (whitened drift)
    M  = A Δt + N − ½ C Δt,  C = E[N²]/Δt  (Itô correction)
    E  = I + M/2 + M²/8                    (eigenvalues ≥ ½: E is SPD for every M)
    V' = (L E)(L E)ᵀ                       (a congruence: SPD, V' ⪰ V/4)

``E² = I + M + M²/2 + O(M³)`` is the second-order expansion of ``exp(M)``, so the step has
the mean ``b Δt`` and the covariance ``Σ Δt`` of the Euler step to O(Δt²): weak order 1.
V' is positive definite by construction, so status 1 never occurs; the new factor is the
Cholesky factor of V', or, when round-off makes that fail, the factor of a Householder QR of
``(L E)ᵀ`` (:func:`factor_from_qr`), which always succeeds.

Each step has a per-path form (the test oracle) and a lane form (the kernels users run);
the lane form performs the per-path operations lane by lane in the same order (same bits).
"""
import math

import numpy as np
from numba import njit

from ..coefficients import NL, lower_times_into, solve_lower_cols


# ------------------------------------------------------------------ Euler–Maruyama

@njit(cache=True, inline="always")
def euler_update(V, bdrift, dt, Vn):
    """``Vn ← V + b Δt + Vn`` symmetrised (``Vn`` holds the step's noise on entry)."""
    m = V.shape[0]
    for a in range(m):
        for b in range(a + 1):
            x = 0.5 * ((Vn[a, b] + bdrift[a, b] * dt) + (Vn[b, a] + bdrift[b, a] * dt)) + V[a, b]
            Vn[a, b] = x
            Vn[b, a] = x


@njit(cache=True, inline="always")
def euler_update_lanes(V, bd, dt, Vn):
    """:func:`euler_update` on lanes (m, m, NL). The diagonal is written apart from the pairs
    below it (one store per entry there): with both stores to one address the lanes did not
    vectorise."""
    m = V.shape[0]
    for a in range(m):
        for b in range(a):
            for l in range(NL):
                x = (0.5 * ((Vn[a, b, l] + bd[a, b, l] * dt)
                            + (Vn[b, a, l] + bd[b, a, l] * dt)) + V[a, b, l])
                Vn[a, b, l] = x
                Vn[b, a, l] = x
        for l in range(NL):
            Vn[a, a, l] = (0.5 * ((Vn[a, a, l] + bd[a, a, l] * dt)
                                  + (Vn[a, a, l] + bd[a, a, l] * dt)) + V[a, a, l])


# ------------------------------------------------------------------ SPD-preserving step

@njit(cache=True, inline="always")
def solve_lower_lanes(L, B, X):
    """:func:`sde.coefficients.solve_lower_cols` on lanes (X = L⁻¹ B; all (m, m, NL), X not B)."""
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


@njit(cache=True, inline="always")
def whitened_drift(L, bdrift, X, F, A):
    """``A = L⁻¹ b L⁻ᵀ`` (b symmetric): ``X = L⁻¹ b``, then ``A = L⁻¹ Xᵀ``; F is work."""
    m = L.shape[0]
    solve_lower_cols(L, bdrift, X)
    for i in range(m):
        for j in range(m):
            F[i, j] = X[j, i]
    solve_lower_cols(L, F, A)


@njit(cache=True, inline="always")
def whitened_drift_lanes(L, bd, X, F, A):
    """:func:`whitened_drift` on lanes."""
    m = L.shape[0]
    solve_lower_lanes(L, bd, X)
    for i in range(m):
        for j in range(m):
            for l in range(NL):
                F[i, j, l] = X[j, i, l]
    solve_lower_lanes(L, F, A)


@njit(cache=True, inline="always")
def spd_update(L, N, dt, X, M, E, F, Vn):
    """The congruence from ``L``, ``E`` (holding A on entry), N and C (in X): ``Vn = F Fᵀ``,
    ``F = L E`` with ``E = I + M/2 + M²/8``, ``M = A Δt + N − ½ C Δt`` (all (m, m))."""
    m = L.shape[0]
    for i in range(m):
        for j in range(i + 1):
            x = (0.5 * (E[i, j] + E[j, i]) * dt + 0.5 * (N[i, j] + N[j, i])
                 - 0.5 * dt * X[i, j])
            M[i, j] = x
            M[j, i] = x
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
    lower_times_into(L, E, F)
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(m):
                acc += F[i, k] * F[j, k]
            Vn[i, j] = acc
            Vn[j, i] = acc


@njit(cache=True, inline="always")
def spd_update_lanes(L, N, dt, X, Mw, E, F, Vn):
    """:func:`spd_update` on lanes."""
    m = L.shape[0]
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
