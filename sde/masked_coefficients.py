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

from .coefficients import lower_times_into, mlp_drift_into, solve_lower_cols
from .masks import row_lists


@njit(cache=True)
def masked_attention_drift_into(V, idx, cnt, scale, out):
    """Add ``scale · (V∘T + DV + VDᵀ)`` (docs/theory.md §3.5) to ``out`` (m, m)."""
    masked_attention_drift_work(V, idx, cnt, scale, out, np.empty((5,) + V.shape))


@njit(cache=True)
def masked_attention_drift_work(V, idx, cnt, scale, out, work):
    """:func:`masked_attention_drift_into` with its work arrays in ``work`` (5, m, m): the
    kernels' form (no allocation per step).

    Every product with C is a sum over a row's keys ``e = idx[a, j]`` (j ascending from 0.0)
    multiplied by ``1/k_a`` afterwards, so that a row whose keys extend the previous row's
    continues its sums (the lanes, :mod:`sde._kernels.masked_lanes`, do; the bits are the
    same)."""
    m = V.shape[0]
    B = work[0]               # C V
    F = work[1]               # C (V∘V) / 2 − B∘B  (R)
    W = work[2]               # B Cᵀ = C V Cᵀ
    U = work[3]               # R Cᵀ
    cv = work[4, 0]           # C v
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        hw = 0.5 * w
        s = 0.0
        for c in range(m):
            B[a, c] = 0.0
            F[a, c] = 0.0
        for j in range(k):
            e = idx[a, j]
            s += V[e, e]
            for c in range(m):
                x = V[e, c]
                B[a, c] += x
                F[a, c] += x * x
        cv[a] = w * s
        for c in range(m):
            b = w * B[a, c]
            B[a, c] = b
            F[a, c] = hw * F[a, c] - b * b
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
    # D V (D has the pattern of C): (DV)_ac = Σ_j D[a, e_j] V[e_j, c]; reuse F for DV.
    # D's row vanishes identically when k ≤ 2 (docs/theory.md §3.5): not formed
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        va = V[a, a]
        h = 2.0 * W[a, a] - cv[a]
        for c in range(m):
            F[a, c] = 0.0
        if k <= 2:
            continue
        for j in range(k):
            e = idx[a, j]
            d = 0.5 * w * va * (V[e, e] - 2.0 * B[a, e] + h)
            for c in range(m):
                F[a, c] += d * V[e, c]
    # b_att = V∘T + (DV + VDᵀ), T = (U + Uᵀ) + W∘W
    for a in range(m):
        for b in range(m):
            t = U[a, b] + U[b, a]
            g = F[a, b] + F[b, a]
            out[a, b] += scale * (V[a, b] * (t + W[a, b] * W[a, b]) + g)


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


@njit(cache=True, inline="always")
def masked_delta_row(LG, L, idx, cnt, a, zh):
    """Row a of ``Δ = C∘(Ẑ − z̄1ᵀ)`` on its keys: ``zh[j] = Δ[a, idx[a, j]]`` (zh (≥ k,)),
    from ``LG = L G'``: ``Ẑ_ae = Σ_{t ≤ e} LG[a, t] L[e, t]``, ``z̄_a = (Σ_j Ẑ_ae_j) / k``,
    ``Δ_ae = (Ẑ_ae − z̄_a) / k`` (the divisions as products with ``1/k``)."""
    k = cnt[a]
    zbar = 0.0
    for j in range(k):
        e = idx[a, j]
        acc = 0.0
        for t in range(e + 1):
            acc += LG[a, t] * L[e, t]
        zh[j] = acc
        zbar += acc
    w = 1.0 / k
    zbar = w * zbar
    for j in range(k):
        zh[j] = (zh[j] - zbar) * w


@njit(cache=True, inline="always")
def masked_noise_parts(L, Z, Gp, coef, idx, cnt, T, F, LG, zh):
    """The two parts of the masked whitened noise: ``T = sqrt(a_lin) L Z + c Δ L`` and
    ``F = Δ L`` (``c = att_noise``; F, LG and zh (m,) are left unset when c = 0). LG (m, m)
    is work."""
    m = L.shape[0]
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
        lower_times_into(L, Gp, LG)
        for a in range(m):
            masked_delta_row(LG, L, idx, cnt, a, zh)
            for t in range(m):
                F[a, t] = 0.0
            for j in range(cnt[a]):
                e = idx[a, j]
                d = zh[j]
                for t in range(e + 1):
                    F[a, t] += d * L[e, t]
            for t in range(m):
                T[a, t] += c * F[a, t]


@njit(cache=True)
def masked_noise_into(L, V, Z, Gp, coef, idx, cnt, scratch, out):
    """Write the O(m³) masked noise into ``out`` (docs/theory.md §3.5, §4.2):
    ``sqrt(a_lin) L Z Lᵀ + att_noise (ΔV + VΔᵀ)``, ``Δ = C∘(Ẑ − z̄1ᵀ)``, ``Ẑ = L G' Lᵀ``.

    ``V`` the state and ``L`` its lower Cholesky factor; ``Z`` symmetric (law of
    (G + Gᵀ)/sqrt 2) and ``Gp`` (G') already times sqrt(Δt); ``scratch`` (3, m, m); ``out``
    must not overlap the inputs (its first row is work space until the product is written).
    Computed as ``sqrt(a_lin) (L Z) Lᵀ + c (F + Fᵀ)`` with ``F = Δ V`` (O(m · nnz(M)), Δ has
    the mask's pattern) and ``c = att_noise``. Covariance per unit Δt:
    ``a_lin Σ_lin(V) + att_noise² Σ_M(V)``.
    """
    m = L.shape[0]
    T = scratch[0]    # L Z
    F = scratch[1]    # Δ V
    sa = np.sqrt(coef.a_lin)
    c = coef.att_noise
    lower_times_into(L, Z, T)
    if c != 0.0:
        zh = out[0]
        lower_times_into(L, Gp, scratch[2])
        for a in range(m):
            masked_delta_row(scratch[2], L, idx, cnt, a, zh)
            for t in range(m):
                acc = 0.0
                for j in range(cnt[a]):
                    acc += zh[j] * V[idx[a, j], t]
                F[a, t] = acc
    # out = sqrt(a_lin) T Lᵀ + c (F + Fᵀ) (symmetric; lower triangle computed, mirrored)
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(j + 1):
                acc += T[i, k] * L[j, k]
            x = sa * acc
            if c != 0.0:
                x += c * (F[i, j] + F[j, i])
            out[i, j] = x
            out[j, i] = x


@njit(cache=True)
def masked_whitened_noise_into(L, Z, Gp, coef, idx, cnt, scratch, N):
    """The masked noise before the sandwich, ``N = L⁻¹ noise L⁻ᵀ`` (the SPD step's input):
    ``N = sqrt(a_lin) Z + c (A + Aᵀ)``, ``A = L⁻¹ Δ L``, ``c = att_noise`` (docs/theory.md
    §4.7). Arguments as :func:`masked_noise_into`; ``N`` (m, m) must not overlap them."""
    m = L.shape[0]
    sa = np.sqrt(coef.a_lin)
    c = coef.att_noise
    A = scratch[0]
    F = scratch[1]
    masked_noise_parts(L, Z, Gp, coef, idx, cnt, A, F, scratch[2], N[0])
    if c != 0.0:
        solve_lower_cols(L, F, A)
    for i in range(m):
        for j in range(m):
            x = sa * Z[i, j]
            if c != 0.0:
                x += c * (A[i, j] + A[j, i])
            N[i, j] = x


@njit(cache=True, inline="always")
def _mm(A, B, out, ta, tb):
    """``out = op(A) op(B)`` (m, m), ``op`` the transpose where ``ta`` / ``tb``; k ascending."""
    m = out.shape[0]
    for i in range(m):
        for j in range(m):
            acc = 0.0
            for k in range(m):
                x = A[k, i] if ta else A[i, k]
                y = B[j, k] if tb else B[k, j]
                acc += x * y
            out[i, j] = acc


@njit(cache=True)
def masked_ito_correction_into(L, coef, idx, cnt, out, work):
    """``C = E[N²]/Δt`` of the masked whitened noise N (:func:`masked_whitened_noise_into`)
    into ``out`` (m, m): ``a_lin (m + 1) I + c² E[(A + Aᵀ)²]/Δt`` (docs/theory.md §4.7), with

        E[A Aᵀ] = L⁻¹ (V∘T) L⁻ᵀ,   E[Aᵀ A] = Lᵀ H L,   E[A²] = L⁻¹ J L,

    T the masked drift's (§3.5), ``P = V⁻¹∘V``, ``B = CV``, ``W = CVCᵀ``, ``U = C∘V``::

        H = V∘(CᵀPC) − ((CᵀP)∘Bᵀ) C − Cᵀ (B∘(PC)) + Cᵀ (P∘W) C
        J = U U − U diag(B) C − B∘(U C) + (U∘W) C

    from ``E[Δ_ab Δ_cd] = C_ab C_cd V_ac (V_bd − B_cb − B_ad + W_ac)`` per unit Δt. Dense
    O(m³); ``work`` (12, m, m), no allocation.
    """
    m = L.shape[0]
    c = coef.att_noise
    for i in range(m):
        for j in range(m):
            out[i, j] = 0.0
        out[i, i] = coef.a_lin * (m + 1.0)
    if c == 0.0:
        return
    C, V, Li, P, B, W, X, Y, S, R, Q, G = (work[0], work[1], work[2], work[3], work[4],
                                           work[5], work[6], work[7], work[8], work[9],
                                           work[10], work[11])
    for i in range(m):
        for j in range(m):
            C[i, j] = 0.0
            X[i, j] = 1.0 if i == j else 0.0
    for a in range(m):
        for j in range(cnt[a]):
            C[a, idx[a, j]] = 1.0 / cnt[a]
    _mm(L, L, V, False, True)                 # V = L Lᵀ
    solve_lower_cols(L, X, Li)                # L⁻¹
    _mm(Li, Li, Y, True, False)               # V⁻¹
    for i in range(m):
        for j in range(m):
            P[i, j] = Y[i, j] * V[i, j]
    _mm(C, V, B, False, False)                # B = C V
    _mm(B, C, W, False, True)                 # W = B Cᵀ
    # S = V∘T, T = C(V∘V)Cᵀ − C(Bᵀ∘Bᵀ) − (B∘B)Cᵀ + W∘W
    for i in range(m):
        for j in range(m):
            X[i, j] = V[i, j] * V[i, j]
            Y[i, j] = B[j, i] * B[j, i]
            R[i, j] = B[i, j] * B[i, j]
    _mm(C, X, Q, False, False)
    _mm(Q, C, S, False, True)
    _mm(C, Y, Q, False, False)
    _mm(R, C, X, False, True)
    for i in range(m):
        for j in range(m):
            S[i, j] = V[i, j] * (S[i, j] - Q[i, j] - X[i, j] + W[i, j] * W[i, j])
    # G = L⁻¹ S L⁻ᵀ
    _mm(Li, S, X, False, False)
    _mm(X, Li, G, False, True)
    # H = V∘(CᵀPC) − ((CᵀP)∘Bᵀ)C − Cᵀ(B∘(PC)) + Cᵀ(P∘W)C, into S
    _mm(C, P, Q, True, False)                 # Q = Cᵀ P
    _mm(Q, C, S, False, False)                # Cᵀ P C
    for i in range(m):
        for j in range(m):
            S[i, j] = V[i, j] * S[i, j]
            X[i, j] = Q[i, j] * B[j, i]
    _mm(X, C, Y, False, False)
    _mm(P, C, X, False, False)                # P C
    for i in range(m):
        for j in range(m):
            S[i, j] -= Y[i, j]
            X[i, j] = B[i, j] * X[i, j]
            R[i, j] = P[i, j] * W[i, j]
    _mm(C, X, Y, True, False)
    _mm(C, R, X, True, False)
    _mm(X, C, R, False, False)
    for i in range(m):
        for j in range(m):
            S[i, j] = S[i, j] - Y[i, j] + R[i, j]
    # G += Lᵀ H L
    _mm(L, S, X, True, False)
    _mm(X, L, Y, False, False)
    for i in range(m):
        for j in range(m):
            G[i, j] += Y[i, j]
    # J = U U − U diag(B) C − B∘(U C) + (U∘W) C, U = C∘V; into S
    for i in range(m):
        for j in range(m):
            P[i, j] = C[i, j] * V[i, j]       # U (P is no longer needed)
            R[i, j] = P[i, j] * B[j, j]       # U diag(B)
            Q[i, j] = P[i, j] * W[i, j]       # U∘W
    _mm(P, P, S, False, False)
    _mm(R, C, X, False, False)
    _mm(P, C, Y, False, False)
    _mm(Q, C, R, False, False)
    for i in range(m):
        for j in range(m):
            S[i, j] = S[i, j] - X[i, j] - B[i, j] * Y[i, j] + R[i, j]
    # G += L⁻¹ J L + (L⁻¹ J L)ᵀ
    _mm(Li, S, X, False, False)
    _mm(X, L, Y, False, False)
    c2 = c * c
    for i in range(m):
        for j in range(m):
            out[i, j] += c2 * 0.5 * ((G[i, j] + Y[i, j] + Y[j, i])
                                     + (G[j, i] + Y[j, i] + Y[i, j]))


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
