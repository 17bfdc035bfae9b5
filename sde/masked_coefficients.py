"""The masked shaped-attention formulas of docs/theory.md §3.5, as ``@njit`` functions.

A mask M (0/1, unit diagonal, §2.4) enters through its row lists (:func:`sde.masks.row_lists`):
row a's allowed keys are ``idx[a, :cnt[a]]`` and the centring is ``C_ab = M_ab / k_a``,
``k_a = cnt[a]``. Products with C therefore cost O(m · nnz(M)), not O(m³) dense.

Unit attention drift (multiplied by ``coef.att_drift = γ²/τ0²``)::

    T(V)    = C (V∘V) Cᵀ − ((CV)∘(CV)) Cᵀ − C ((VCᵀ)∘(VCᵀ)) + (C V Cᵀ)∘(C V Cᵀ)
    D(V)_ab = C_ab v_a [ v_b − 2 (V Cᵀ)_ba + 2 (C V Cᵀ)_aa − (C v)_a ] / 2
    b_att   = V∘T + D V + V Dᵀ

computed as ``B = CV``, ``W = B Cᵀ = CVCᵀ``, ``R = C(V∘V)/2 − B∘B``, ``T = RCᵀ + (RCᵀ)ᵀ + W∘W``
(``VCᵀ = Bᵀ`` since V is symmetric, so ``C((VCᵀ)∘(VCᵀ)) = (((CV)∘(CV))Cᵀ)ᵀ``), and
``(VCᵀ)_ba = B_ab``.

Unit attention noise (multiplied by ``coef.att_noise = γ²/(τ0 sqrt H)``) per sqrt(dt)::

    Ẑ = L G' Lᵀ,   z̄ = (C∘Ẑ) 1,   Δ = C∘(Ẑ − z̄1ᵀ),   noise = ΔV + VΔᵀ

with ``L Lᵀ = V``. Only the allowed entries of Ẑ are formed. The whole increment (with the
linear part ``sqrt(a_lin) L Z Lᵀ``) is ``(L N + c F) Lᵀ + c L Fᵀ`` with ``N = sqrt(a_lin) Z``,
``F = Δ L`` and ``c = att_noise``: O(m³) per step. For the complete mask everything reduces
to §3.1 / §4.1 exactly (``C = 11ᵀ/m``, ``Δ = ẐP/m``).
"""
import numpy as np
from numba import njit

from .coefficients import mlp_drift_into
from .masks import row_lists


@njit(cache=True)
def masked_attention_drift_into(V, idx, cnt, scale, out):
    """Add ``scale · (V∘T + DV + VDᵀ)`` (docs/theory.md §3.5) to ``out`` (m, m)."""
    masked_attention_drift_work(V, idx, cnt, scale, out, np.empty((5,) + V.shape))


@njit(cache=True)
def masked_attention_drift_work(V, idx, cnt, scale, out, work):
    """:func:`masked_attention_drift_into` with its work arrays in ``work`` (5, m, m): the
    kernels' form (no allocation per step)."""
    m = V.shape[0]
    B = work[0]               # C V
    F = work[1]               # C (V∘V) / 2 − B∘B  (R)
    W = work[2]               # B Cᵀ = C V Cᵀ
    U = work[3]               # R Cᵀ
    cv = work[4, 0]           # C v
    for a in range(m):
        cv[a] = 0.0
        for c in range(m):
            B[a, c] = 0.0
            F[a, c] = 0.0
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
    # D V (D has the pattern of C): (DV)_ac = Σ_j D[a, e_j] V[e_j, c]; reuse F for DV
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
def masked_drift_into(V, coef, idx, cnt, out):
    """Write ``b(V) = att_drift · b_att,M(V) + mlp_drift · b_act(V)`` into ``out``."""
    masked_drift_work(V, coef, idx, cnt, out, np.empty((5,) + V.shape))


@njit(cache=True)
def masked_drift_work(V, coef, idx, cnt, out, work):
    """:func:`masked_drift_into` with the attention drift's work arrays in ``work`` (5, m, m)."""
    out[:, :] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_into(V, coef, coef.mlp_drift, out)
    if coef.att_drift != 0.0:
        masked_attention_drift_work(V, idx, cnt, coef.att_drift, out, work)


@njit(cache=True)
def masked_drift(V, coef, idx, cnt):
    out = np.empty_like(V)
    masked_drift_into(V, coef, idx, cnt, out)
    return out


@njit(cache=True)
def masked_noise_into(L, Z, Gp, coef, idx, cnt, scratch, out):
    """Write the O(m³) masked noise into ``out`` (docs/theory.md §3.5, §4.2):
    ``sqrt(a_lin) L Z Lᵀ + att_noise (ΔV + VΔᵀ)``, ``Δ = C∘(Ẑ − z̄1ᵀ)``, ``Ẑ = L G' Lᵀ``.

    ``L`` lower Cholesky factor of V; ``Z`` symmetric (law of (G + Gᵀ)/sqrt 2) and ``Gp``
    (G') already times sqrt(Δt); ``scratch`` (3, m, m); ``out`` must not overlap the inputs
    (its first row is work space until the product is written). Covariance per unit Δt:
    ``a_lin Σ_lin(V) + att_noise² Σ_M(V)``.
    """
    m = L.shape[0]
    T = scratch[0]    # L N + c F
    F = scratch[1]    # Δ L
    LG = scratch[2]   # L G'
    sa = np.sqrt(coef.a_lin)
    c = coef.att_noise
    # T = sqrt(a_lin) L Z
    for i in range(m):
        for j in range(m):
            T[i, j] = 0.0
        for k in range(i + 1):
            lik = sa * L[i, k]
            for j in range(m):
                T[i, j] += lik * Z[k, j]
    if c != 0.0:
        for i in range(m):
            for j in range(m):
                LG[i, j] = 0.0
            for k in range(i + 1):
                lik = L[i, k]
                for j in range(m):
                    LG[i, j] += lik * Gp[k, j]
        zh = out[0]   # work space (m,): out is written only at the end
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
            for t in range(m):
                F[a, t] = 0.0
            for j in range(k):
                e = idx[a, j]
                d = (zh[j] - zbar) / k
                for t in range(e + 1):
                    F[a, t] += d * L[e, t]
            for t in range(m):
                T[a, t] += c * F[a, t]
    # out = T Lᵀ + c L Fᵀ (symmetric; lower triangle computed, mirrored)
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


# ---------------------------------------------------------------- Python entry points

def drift(V, coef, M):
    """b(V) of a model with limit ``coef`` and mask matrix ``M`` (docs/theory.md §3.5)."""
    idx, cnt = row_lists(M)
    return masked_drift(np.ascontiguousarray(V, dtype=np.float64), coef, idx, cnt)


def unit_noise_numpy(V, M, Gp, L=None):
    """``ΔV + VΔᵀ`` for one G' (dense numpy reference of the unit masked attention noise)."""
    M = np.asarray(M, dtype=np.float64)
    C = M / M.sum(axis=1, keepdims=True)
    if L is None:
        L = np.linalg.cholesky(V)
    Zh = L @ Gp @ L.T
    zbar = (C * Zh).sum(axis=1)
    D = C * (Zh - zbar[:, None])
    DV = D @ V
    return DV + DV.T


def noise_map(V, M):
    """The m² × m² matrix mapping vec G' (row-major) to ``ΔV + VΔᵀ`` (unit masked noise)."""
    V = np.asarray(V, dtype=np.float64)
    m = V.shape[0]
    L = np.linalg.cholesky(V)
    out = np.empty((m * m, m * m))
    E = np.zeros((m, m))
    for k in range(m * m):
        E.flat[k] = 1.0
        out[:, k] = unit_noise_numpy(V, M, E, L).ravel()
        E.flat[k] = 0.0
    return out


def drift_numpy(V, M):
    """The unit masked attention drift ``V∘T + DV + VDᵀ`` straight from the formulas of §3.5
    (dense numpy; a reference for the njit version)."""
    V = np.asarray(V, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    C = M / M.sum(axis=1, keepdims=True)
    v = np.diag(V)
    CV = C @ V
    VC = V @ C.T
    CVC = C @ V @ C.T
    T = C @ (V * V) @ C.T - (CV * CV) @ C.T - C @ (VC * VC) + CVC * CVC
    D = C * v[:, None] * (v[None, :] - 2.0 * VC.T + 2.0 * np.diag(CVC)[:, None]
                          - (C @ v)[:, None]) / 2.0
    return V * T + D @ V + V @ D.T
