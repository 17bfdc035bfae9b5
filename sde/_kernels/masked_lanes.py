"""The masked formulas of :mod:`sde.masked_coefficients` on lanes (path axis last), beside the complete-mask
lane formulas of :mod:`sde.coefficients`.

Every (m, m) array of the scalar function is an (m, m, NL) slot here; each lane performs the
scalar function's operations in the same order (vectorising across lanes reorders no sum),
so the results are bit-identical (tests/test_masked_lanes.py). The mask is the run's: its
row lists ``idx``, ``cnt`` are the same on every lane, so the loops over allowed keys are
scalar loops around the lane loops.
"""
import math

from numba import njit

from ..coefficients import NL, _dot_lanes, _put_lanes, mlp_drift_lanes


@njit(cache=True, inline="always")
def _sum_keys_lanes(X, idx, a, k, out):
    """``out[l] = Σ_{j < k} X[idx[a, j], l]`` per lane, j ascending from 0.0; running sums in
    registers (as :func:`sde.coefficients._dot_lanes`). X (m, NL), out (NL,)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for j in range(k):
        e = idx[a, j]
        a0 += X[e, 0]
        a1 += X[e, 1]
        a2 += X[e, 2]
        a3 += X[e, 3]
        a4 += X[e, 4]
        a5 += X[e, 5]
        a6 += X[e, 6]
        a7 += X[e, 7]
    _put_lanes(out, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, inline="always")
def _add_scaled_dot_lanes(c, X, Y, k0, k1, out):
    """``out[l] += Σ_{k0 ≤ k < k1} (c X[k, l]) Y[k, l]`` per lane, term by term in k order
    (the per-path ``acc += c * x * y``); running sums in registers."""
    a0, a1, a2, a3 = out[0], out[1], out[2], out[3]
    a4, a5, a6, a7 = out[4], out[5], out[6], out[7]
    for k in range(k0, k1):
        a0 += c * X[k, 0] * Y[k, 0]
        a1 += c * X[k, 1] * Y[k, 1]
        a2 += c * X[k, 2] * Y[k, 2]
        a3 += c * X[k, 3] * Y[k, 3]
        a4 += c * X[k, 4] * Y[k, 4]
        a5 += c * X[k, 5] * Y[k, 5]
        a6 += c * X[k, 6] * Y[k, 6]
        a7 += c * X[k, 7] * Y[k, 7]
    _put_lanes(out, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, inline="always")
def masked_attention_drift_lanes(V, idx, cnt, scale, out, B, F, W, U, q, r):
    """:func:`sde.masked_coefficients.masked_attention_drift_work` on lanes: adds to ``out`` (m, m, NL).

    B, F, W, U (m, m, NL) are the scalar function's work arrays; ``q`` (≥ 1, m, NL) holds
    ``C v`` in row 0; ``r`` (≥ 2, ≥ 2, NL) holds two per-lane scalars."""
    m = V.shape[0]
    cv = q[0]
    d = r[0, 0]
    h = r[0, 1]
    for a in range(m):
        for l in range(NL):
            cv[a, l] = 0.0
        for c in range(m):
            for l in range(NL):
                B[a, c, l] = 0.0
                F[a, c, l] = 0.0
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        for j in range(k):
            e = idx[a, j]
            for l in range(NL):
                cv[a, l] += w * V[e, e, l]
            for c in range(m):
                for l in range(NL):
                    x = V[e, c, l]
                    B[a, c, l] += w * x
                    F[a, c, l] += 0.5 * w * x * x
    for a in range(m):
        for c in range(m):
            for l in range(NL):
                F[a, c, l] -= B[a, c, l] * B[a, c, l]
    for c in range(m):
        for a in range(m):
            k = cnt[a]
            w = 1.0 / k
            _sum_keys_lanes(B[c], idx, a, k, W[c, a])
            _sum_keys_lanes(F[c], idx, a, k, U[c, a])
            for l in range(NL):
                W[c, a, l] = w * W[c, a, l]
                U[c, a, l] = w * U[c, a, l]
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        for l in range(NL):
            h[l] = 2.0 * W[a, a, l] - cv[a, l]
        for c in range(m):
            for l in range(NL):
                F[a, c, l] = 0.0
        for j in range(k):
            e = idx[a, j]
            for l in range(NL):
                d[l] = 0.5 * w * V[a, a, l] * (V[e, e, l] - 2.0 * B[a, e, l] + h[l])
            for c in range(m):
                for l in range(NL):
                    F[a, c, l] += d[l] * V[e, c, l]
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                t = U[a, b, l] + U[b, a, l] + W[a, b, l] * W[a, b, l]
                out[a, b, l] += scale * (V[a, b, l] * t + F[a, b, l] + F[b, a, l])


@njit(cache=True, inline="always")
def masked_drift_lanes(V, coef, idx, cnt, out, B, F, W, U, q, r):
    """:func:`sde.masked_coefficients.masked_drift_work` on lanes (work as
    :func:`masked_attention_drift_lanes`)."""
    m = V.shape[0]
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                out[a, b, l] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_lanes(V, coef, coef.mlp_drift, out)
    if coef.att_drift != 0.0:
        masked_attention_drift_lanes(V, idx, cnt, coef.att_drift, out, B, F, W, U, q, r)


@njit(cache=True, inline="always")
def masked_noise_parts_lanes(L, Z, Gp, coef, idx, cnt, T, F, LG, q, r):
    """The two parts of the masked noise on lanes (:func:`sde.masked_coefficients.masked_noise_parts`):
    ``T = sqrt(a_lin) L Z + c Δ L`` and ``F = Δ L`` (when ``c = att_noise ≠ 0``).

    LG (m, m, NL) is work; ``q`` (≥ 2, m, NL) holds Ẑ's allowed entries of a row in row 1;
    ``r`` (≥ 2, ≥ 2, NL) a per-lane scalar in ``r[1, 0]``."""
    m = L.shape[0]
    sa = math.sqrt(coef.a_lin)
    c = coef.att_noise
    for i in range(m):
        for j in range(m):
            for l in range(NL):
                T[i, j, l] = 0.0
        for k in range(i + 1):
            for j in range(m):
                for l in range(NL):
                    T[i, j, l] += sa * L[i, k, l] * Z[k, j, l]
    if c != 0.0:
        zh = q[1]
        zbar = r[1, 0]
        for i in range(m):
            for j in range(m):
                for l in range(NL):
                    LG[i, j, l] = 0.0
            for k in range(i + 1):
                for j in range(m):
                    for l in range(NL):
                        LG[i, j, l] += L[i, k, l] * Gp[k, j, l]
        for a in range(m):
            k = cnt[a]
            for l in range(NL):
                zbar[l] = 0.0
            for j in range(k):
                e = idx[a, j]
                _dot_lanes(LG[a], L[e], 0, e + 1, zh[j])
                for l in range(NL):
                    zbar[l] += zh[j, l]
            for l in range(NL):
                zbar[l] /= k
            for t in range(m):
                for l in range(NL):
                    F[a, t, l] = 0.0
            for j in range(k):
                e = idx[a, j]
                for t in range(e + 1):
                    for l in range(NL):
                        F[a, t, l] += (zh[j, l] - zbar[l]) / k * L[e, t, l]
            for t in range(m):
                for l in range(NL):
                    T[a, t, l] += c * F[a, t, l]


@njit(cache=True, inline="always")
def masked_noise_lanes(L, Z, Gp, coef, idx, cnt, T, F, LG, q, r, out):
    """:func:`sde.masked_coefficients.masked_noise_into` on lanes: ``out = T Lᵀ + c L Fᵀ`` (m, m, NL)
    from :func:`masked_noise_parts_lanes` (T, F, LG, q, r as there)."""
    m = L.shape[0]
    c = coef.att_noise
    masked_noise_parts_lanes(L, Z, Gp, coef, idx, cnt, T, F, LG, q, r)
    for i in range(m):
        for j in range(i + 1):
            _dot_lanes(T[i], L[j], 0, j + 1, out[i, j])
            if c != 0.0:
                _add_scaled_dot_lanes(c, L[i], F[j], 0, i + 1, out[i, j])
            for l in range(NL):
                out[j, i, l] = out[i, j, l]
