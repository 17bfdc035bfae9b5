"""The masked formulas of :mod:`sde.masked_coefficients` on lanes (path axis last), beside the complete-mask
lane formulas of :mod:`sde.coefficients`.

Every (m, m) array of the scalar function is an (m, m, NL) slot here; each lane performs the
scalar function's operations in the same order (vectorising across lanes reorders no sum),
so the results are bit-identical (tests/test_masked_lanes.py). The mask is the run's: its
row lists ``idx``, ``cnt`` are the same on every lane, so the loops over allowed keys are
scalar loops around the lane loops.
"""
import math

import numpy as np
from numba import njit

from ..coefficients import NL, _dot_lanes, mlp_drift_lanes


# Running sums over a row's keys are tuples of NL per-lane values: SSA values, so they stay
# in registers (an ``out[l] += …`` store per term could alias the inputs), and each lane adds
# its terms in the scalar function's order.
ZERO = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@njit(cache=True, inline="always")
def _plus(s, x):
    """``s + x`` lane by lane (s a tuple of NL, x a tuple or an (NL,) array)."""
    return (s[0] + x[0], s[1] + x[1], s[2] + x[2], s[3] + x[3],
            s[4] + x[4], s[5] + x[5], s[6] + x[6], s[7] + x[7])


@njit(cache=True, inline="always")
def _plus_prod(s, x, y):
    """``s + x y`` lane by lane (the product rounded, then the sum)."""
    return (s[0] + x[0] * y[0], s[1] + x[1] * y[1], s[2] + x[2] * y[2], s[3] + x[3] * y[3],
            s[4] + x[4] * y[4], s[5] + x[5] * y[5], s[6] + x[6] * y[6], s[7] + x[7] * y[7])


@njit(cache=True, inline="always")
def _times(w, x):
    """``w x`` lane by lane, w a scalar."""
    return (w * x[0], w * x[1], w * x[2], w * x[3], w * x[4], w * x[5], w * x[6], w * x[7])


@njit(cache=True, inline="always")
def _lanes_of(x):
    """An (NL,) array's values as a tuple."""
    return (x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])


@njit(cache=True, inline="always")
def _store(out, s):
    """Write the tuple ``s`` into ``out`` (NL,)."""
    for l in range(NL):
        out[l] = s[l]


@njit(cache=True, inline="always")
def _key_moments_lanes(w, hw, V, c, idx, a, k, outb, outf):
    """Over row a's keys ``e = idx[a, j]``, j ascending from 0.0, per lane:
    ``outb = Σ_j w V[e, c]`` and ``outf = Σ_j (hw V[e, c]) V[e, c]`` (the scalar function's
    ``B += w x``, ``F += 0.5 w x x`` with ``hw = 0.5 w``). V (m, m, NL); outb, outf (NL,)."""
    b = ZERO
    f = ZERO
    for j in range(k):
        x = V[idx[a, j], c]
        b = _plus(b, _times(w, x))
        f = _plus_prod(f, _times(hw, x), x)
    _store(outb, b)
    _store(outf, f)


@njit(cache=True, inline="always")
def _add_key_pair_sums_lanes(X, Y, c, idx, a, j0, k, outx, outy):
    """``outx += Σ_{j0 ≤ j < k} X[c, idx[a, j]]`` and the same of Y into ``outy``, term by
    term in j order from the values on entry. X, Y (m, m, NL); outx, outy (NL,)."""
    x = _lanes_of(outx)
    y = _lanes_of(outy)
    for j in range(j0, k):
        e = idx[a, j]
        x = _plus(x, X[c, e])
        y = _plus(y, Y[c, e])
    _store(outx, x)
    _store(outy, y)


@njit(cache=True)
def key_prefix_rows(idx, cnt):
    """``pre[a]``: the earlier row b < a with the most keys whose key list is a prefix of row
    a's (``idx[b, :cnt[b]] == idx[a, :cnt[b]]``), or −1. A sum over row a's keys in j order
    is then row b's sum continued over a's remaining keys — the same additions in the same
    order (row a − 1 for a causal mask)."""
    m = cnt.shape[0]
    pre = np.full(m, -1, dtype=np.int64)
    for a in range(m):
        best = 0
        for b in range(a):
            n = cnt[b]
            if best < n <= cnt[a]:
                same = True
                for j in range(n):
                    if idx[b, j] != idx[a, j]:
                        same = False
                        break
                if same:
                    best = n
                    pre[a] = b
    return pre


@njit(cache=True, inline="always")
def _key_dot_lanes(D, X, c, idx, a, j0, k, out):
    """``out = Σ_{j0 ≤ j < k} D[j] X[idx[a, j], c]`` per lane, j ascending from 0.0 (a product
    with row a of a matrix with the mask's pattern). D (≥ k, NL); X (m, m, NL); out (NL,)."""
    s = ZERO
    for j in range(j0, k):
        s = _plus_prod(s, D[j], X[idx[a, j], c])
    _store(out, s)


@njit(cache=True, inline="always")
def _key_dot_pair_lanes(D, X, c, idx, a, k, out0, out1):
    """:func:`_key_dot_lanes` (from j = 0) for the columns c and c + 1 at once into out0, out1:
    twice the independent running sums, so the additions' latency is hidden."""
    s = ZERO
    t = ZERO
    for j in range(k):
        d = D[j]
        e = idx[a, j]
        s = _plus_prod(s, d, X[e, c])
        t = _plus_prod(t, d, X[e, c + 1])
    _store(out0, s)
    _store(out1, t)


@njit(cache=True, inline="always")
def _add_scaled_dot_lanes(c, X, Y, k0, k1, out):
    """``out += Σ_{k0 ≤ k < k1} (c X[k]) Y[k]`` per lane, term by term in k order (the
    per-path ``acc += c * x * y``)."""
    s = _lanes_of(out)
    for k in range(k0, k1):
        s = _plus_prod(s, _times(c, X[k]), Y[k])
    _store(out, s)


@njit(cache=True, inline="always")
def masked_attention_drift_lanes(V, idx, cnt, pre, scale, out, B, F, W, U, q, r):
    """:func:`sde.masked_coefficients.masked_attention_drift_work` on lanes: adds to ``out`` (m, m, NL).

    ``pre``: :func:`key_prefix_rows` of the mask. B, F, W, U (m, m, NL) are the scalar
    function's work arrays; ``q`` (≥ 2, m, NL) holds
    ``C v`` in row 0 and a row's D entries in row 1; ``r`` (≥ 1, ≥ 2, NL) a per-lane scalar
    in ``r[0, 1]``. Every sum over a row's keys runs in registers (the helpers above), in the
    scalar function's order."""
    m = V.shape[0]
    cv = q[0]
    d = q[1]
    h = r[0, 1]
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        for l in range(NL):
            cv[a, l] = 0.0
        for j in range(k):
            e = idx[a, j]
            for l in range(NL):
                cv[a, l] += w * V[e, e, l]
        for c in range(m):
            _key_moments_lanes(w, 0.5 * w, V, c, idx, a, k, B[a, c], F[a, c])
            for l in range(NL):
                F[a, c, l] -= B[a, c, l] * B[a, c, l]
    for c in range(m):
        # the key sums of B and R first, a row continuing its prefix row's; then times 1/k
        for a in range(m):
            b = pre[a]
            j0 = 0
            if b >= 0:
                j0 = cnt[b]
                for l in range(NL):
                    W[c, a, l] = W[c, b, l]
                    U[c, a, l] = U[c, b, l]
            else:
                for l in range(NL):
                    W[c, a, l] = 0.0
                    U[c, a, l] = 0.0
            _add_key_pair_sums_lanes(B, F, c, idx, a, j0, cnt[a], W[c, a], U[c, a])
        for a in range(m):
            w = 1.0 / cnt[a]
            for l in range(NL):
                W[c, a, l] = w * W[c, a, l]
                U[c, a, l] = w * U[c, a, l]
    # D V (D has the pattern of C), into F
    for a in range(m):
        k = cnt[a]
        w = 1.0 / k
        for l in range(NL):
            h[l] = 2.0 * W[a, a, l] - cv[a, l]
        for j in range(k):
            e = idx[a, j]
            for l in range(NL):
                d[j, l] = 0.5 * w * V[a, a, l] * (V[e, e, l] - 2.0 * B[a, e, l] + h[l])
        for c in range(0, m - 1, 2):
            _key_dot_pair_lanes(d, V, c, idx, a, k, F[a, c], F[a, c + 1])
        if m % 2 == 1:
            _key_dot_lanes(d, V, m - 1, idx, a, 0, k, F[a, m - 1])
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                t = U[a, b, l] + U[b, a, l] + W[a, b, l] * W[a, b, l]
                out[a, b, l] += scale * (V[a, b, l] * t + F[a, b, l] + F[b, a, l])


@njit(cache=True, inline="always")
def masked_drift_lanes(V, coef, idx, cnt, pre, out, B, F, W, U, q, r):
    """:func:`sde.masked_coefficients.masked_drift_work` on lanes (work as
    :func:`masked_attention_drift_lanes`)."""
    out[:, :, :] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_lanes(V, coef, coef.mlp_drift, out)
    if coef.att_drift != 0.0:
        masked_attention_drift_lanes(V, idx, cnt, pre, coef.att_drift, out, B, F, W, U, q, r)


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
            _add_scaled_dot_lanes(sa, L[i], Z[:, j], 0, i + 1, T[i, j])
    if c != 0.0:
        zh = q[1]
        zbar = r[1, 0]
        for i in range(m):
            for j in range(m):
                _dot_lanes(L[i], Gp[:, j], 0, i + 1, LG[i, j])
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
            for j in range(k):          # zh becomes Δ's row: (ẑ − z̄)/k
                for l in range(NL):
                    zh[j, l] = (zh[j, l] - zbar[l]) / k
            # F[a, t] = Σ_j Δ_aj L[e_j, t] over the keys e_j ≥ t (L is lower triangular):
            # the keys increase, so those are j ≥ jt
            jt = 0
            for t in range(m):
                while jt < k and idx[a, jt] < t:
                    jt += 1
                _key_dot_lanes(zh, L, t, idx, a, jt, k, F[a, t])
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
