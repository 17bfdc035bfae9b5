"""A reference for the masked Euler–Maruyama step with every product by C formed term by
term, ``Σ_j (1/k) x_j`` (tests only; the package sums over a row's keys and multiplies by
1/k once, sde/masked_coefficients.py).

The same formulas of docs/theory.md §3.5 in another rounding: the unit attention drift from
``B = CV``, ``R = C(V∘V)/2 − B∘B``, ``W = BCᵀ``, ``U = RCᵀ``, ``D`` (each term of a sum over
keys times 1/k), and the noise as ``(sqrt(a_lin) L Z + c ΔL) Lᵀ + c L (ΔL)ᵀ`` with the
divisions by k of z̄ and Δ. :func:`euler_paths` integrates paths driven by given unit
normals in the package's order (:mod:`sde._kernels.noise_sources`), with the package's
status rules, so that tests can compare the package's masked kernel with it pathwise (the
same normals) and in law (independent normals).
"""
import math

import numpy as np
from numba import njit

from sde.coefficients import cholesky_into, mlp_drift_into


@njit(cache=True)
def per_term_drift(V, coef, idx, cnt, out):
    """``b(V)`` of a masked model (unit attention drift times ``coef.att_drift``)."""
    m = V.shape[0]
    out[:, :] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_into(V, coef, coef.mlp_drift, out)
    if coef.att_drift == 0.0:
        return
    scale = coef.att_drift
    B = np.zeros((m, m))
    F = np.zeros((m, m))
    W = np.empty((m, m))
    U = np.empty((m, m))
    cv = np.zeros(m)
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        for j in range(k):
            e = idx[a, j]
            cv[a] += w * V[e, e]
            for c in range(m):
                x = V[e, c]
                B[a, c] += w * x
                F[a, c] += 0.5 * w * x * x
    for a in range(m):
        for c in range(m):
            F[a, c] -= B[a, c] * B[a, c]
    for c in range(m):
        for a in range(m):
            k = cnt[a]
            w = 1.0 / k
            sb = 0.0
            sr = 0.0
            for j in range(k):
                e = idx[a, j]
                sb += B[c, e]
                sr += F[c, e]
            W[c, a] = w * sb
            U[c, a] = w * sr
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        va = V[a, a]
        h = 2.0 * W[a, a] - cv[a]
        for c in range(m):
            F[a, c] = 0.0
        for j in range(k):
            e = idx[a, j]
            d = 0.5 * w * va * (V[e, e] - 2.0 * B[a, e] + h)
            for c in range(m):
                F[a, c] += d * V[e, c]
    for a in range(m):
        for b in range(m):
            t = U[a, b] + U[b, a] + W[a, b] * W[a, b]
            out[a, b] += scale * (V[a, b] * t + F[a, b] + F[b, a])


@njit(cache=True)
def per_term_noise(L, Z, Gp, coef, idx, cnt, out):
    """``sqrt(a_lin) L Z Lᵀ + att_noise (ΔV + VΔᵀ)`` as ``T Lᵀ + c L Fᵀ``, ``T = sqrt(a_lin) L Z
    + c F``, ``F = Δ L``; Z, Gp already times sqrt(Δt)."""
    m = L.shape[0]
    sa = math.sqrt(coef.a_lin)
    c = coef.att_noise
    T = np.zeros((m, m))
    F = np.zeros((m, m))
    for i in range(m):
        for k in range(i + 1):
            lik = sa * L[i, k]
            for j in range(m):
                T[i, j] += lik * Z[k, j]
    if c != 0.0:
        LG = np.zeros((m, m))
        zh = np.empty(m)
        for i in range(m):
            for k in range(i + 1):
                for j in range(m):
                    LG[i, j] += L[i, k] * Gp[k, j]
        for a in range(m):
            k = cnt[a]
            zbar = 0.0
            for j in range(k):
                e = idx[a, j]
                acc = 0.0
                for t in range(e + 1):
                    acc += LG[a, t] * L[e, t]
                zh[j] = acc
                zbar += acc
            zbar /= k
            for j in range(k):
                e = idx[a, j]
                d = (zh[j] - zbar) / k
                for t in range(e + 1):
                    F[a, t] += d * L[e, t]
            for t in range(m):
                T[a, t] += c * F[a, t]
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(j + 1):
                acc += T[i, k] * L[j, k]
            if c != 0.0:
                for k in range(i + 1):
                    acc += c * L[i, k] * F[j, k]
            out[i, j] = acc
            out[j, i] = acc


@njit(cache=True)
def euler_paths(V0, coef, idx, cnt, dt, normals, bound, out_V, status, death):
    """Masked Euler paths from unit ``normals`` (paths, steps, m(m+1)/2 + m²): step s of path
    p reads ``normals[p, s]`` as the package's kernels draw them (Z's upper triangle row by
    row, diagonal first, times sqrt(2Δt) on the diagonal and sqrt(Δt) off it; then G'
    row-major times sqrt(Δt)). ``out_V`` (paths, steps + 1, m, m) NaN-filled; status 2 if an
    entry is non-finite or above ``bound``, 1 if the Cholesky factor fails (death time
    ``s Δt``)."""
    m = V0.shape[0]
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    V = np.empty((m, m))
    L = np.zeros((m, m))
    Z = np.empty((m, m))
    Gp = np.empty((m, m))
    b = np.empty((m, m))
    N = np.empty((m, m))
    for p in range(normals.shape[0]):
        V[:, :] = V0
        cholesky_into(V, L)
        out_V[p, 0] = V
        for s in range(normals.shape[1]):
            g = normals[p, s]
            i = 0
            for a in range(m):
                Z[a, a] = sq2 * g[i]
                i += 1
                for c in range(a + 1, m):
                    Z[a, c] = sq * g[i]
                    Z[c, a] = Z[a, c]
                    i += 1
            for a in range(m):
                for c in range(m):
                    Gp[a, c] = sq * g[i]
                    i += 1
            per_term_drift(V, coef, idx, cnt, b)
            per_term_noise(L, Z, Gp, coef, idx, cnt, N)
            bad = False
            for a in range(m):
                for c in range(a + 1):
                    x = 0.5 * ((N[a, c] + b[a, c] * dt) + (N[c, a] + b[c, a] * dt)) + V[a, c]
                    if not (abs(x) <= bound):
                        bad = True
                    V[a, c] = x
                    V[c, a] = x
            if bad:
                status[p] = 2
            elif not cholesky_into(V, L):
                status[p] = 1
            if status[p] != 0:
                death[p] = (s + 1) * dt
                break
            out_V[p, s + 1] = V
