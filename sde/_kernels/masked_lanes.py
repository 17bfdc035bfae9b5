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

from ..coefficients import NL, _dot_lanes
from .noise_sources import draw_lane


@njit(cache=True)
def draw_lane_called(rng, k, l, sq, sq2, has_att, Z, Gp):
    """:func:`sde._kernels.noise_sources.draw_lane` (the same draws) as a function of its own,
    which the masked kernels call (:func:`sde._kernels.loops.draw_form`)."""
    draw_lane(rng, k, l, sq, sq2, has_att, Z, Gp)


@njit(cache=True)
def draw_lanes_called(rng, b0, active, sq, sq2, has_att, Z, Gp):
    """:func:`sde._kernels.noise_sources.draw_lane` for every active lane l (``active``
    (NL,) bool) from block ``b0 + l``, in lane order, as one function: one call per lane
    group and step (the lane kernels' masked draw, :func:`sde._kernels.loops.draw_form`)."""
    for l in range(NL):
        if active[l]:
            draw_lane(rng, b0 + l, l, sq, sq2, has_att, Z, Gp)


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


@njit(cache=True)
def key_prefix_rows(idx, cnt):
    """``pre[a] = a − 1`` when row a − 1's key list is a prefix of row a's
    (``idx[a-1, :cnt[a-1]] == idx[a, :cnt[a-1]]``), else −1. A sum over row a's keys in j
    order is then row a − 1's sum continued over a's remaining keys — the same additions in
    the same order — so the drift carries it from row to row in registers (every row of a
    causal mask; the first rows of a sliding one)."""
    m = cnt.shape[0]
    pre = np.empty(m, dtype=np.int64)
    pre[0] = -1
    for a in range(1, m):
        pre[a] = -1
        n = cnt[a - 1]
        if n <= cnt[a]:
            same = True
            for j in range(n):
                if idx[a - 1, j] != idx[a, j]:
                    same = False
                    break
            if same:
                pre[a] = a - 1
    return pre


@njit(cache=True, inline="always")
def _key_dot_lanes(D, X, c, idx, a, k, out):
    """``out = Σ_{j < k} D[j] X[idx[a, j], c]`` per lane, j ascending from 0.0 (a product
    with row a of a matrix with the mask's pattern). D (≥ k, NL); X (m, m, NL); out (NL,)."""
    s = ZERO
    for j in range(k):
        s = _plus_prod(s, D[j], X[idx[a, j], c])
    _store(out, s)


@njit(cache=True, inline="always")
def _key_dot_pair_lanes(D, X, c, idx, a, k, out0, out1):
    """:func:`_key_dot_lanes` for the columns c and c + 1 at once into out0, out1:
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
def _moment(w, hw, x, y):
    """One lane of ``(B, R) = (w x, hw y − B²)`` from the key sums x = Σ V, y = Σ V²."""
    b = w * x
    return b, hw * y - b * b


@njit(cache=True, inline="always")
def _first_key(pre, cnt, a):
    """The first of row a's keys its sums still need: 0, or ``cnt[a-1]`` when they continue
    row a − 1's (:func:`key_prefix_rows`)."""
    return 0 if pre[a] < 0 else cnt[a - 1]


@njit(cache=True, inline="always")
def _delta_row_lanes(LG, L, idx, cnt, a, zh):
    """:func:`sde.masked_coefficients.masked_delta_row` on lanes: ``zh[j]`` (NL,) = Δ on row
    a's key j, from LG = L G' (m, m, NL)."""
    k = cnt[a]
    zb = ZERO
    for j in range(k):
        e = idx[a, j]
        _dot_lanes(LG[a], L[e], 0, e + 1, zh[j])
        zb = _plus(zb, zh[j])
    w = 1.0 / k
    zb = _times(w, zb)
    for j in range(k):
        x = _lanes_of(zh[j])
        _store(zh[j], ((x[0] - zb[0]) * w, (x[1] - zb[1]) * w, (x[2] - zb[2]) * w,
                       (x[3] - zb[3]) * w, (x[4] - zb[4]) * w, (x[5] - zb[5]) * w,
                       (x[6] - zb[6]) * w, (x[7] - zb[7]) * w))


@njit(cache=True, inline="always")
def masked_attention_drift_lanes(V, idx, cnt, pre, scale, out, B, F, W, U, q, r):
    """:func:`sde.masked_coefficients.masked_attention_drift_work` on lanes: adds to ``out`` (m, m, NL).

    ``pre``: :func:`key_prefix_rows` of the mask. B, F, W, U (m, m, NL) are the scalar
    function's work arrays; ``q`` (≥ 2, m, NL) holds ``C v`` in row 0 and a row's D entries
    in row 1; ``r`` (≥ 1, m, NL) the rows' ``1/k`` and ``1/(2k)`` in ``r[0, a, 0:2]``. Every
    sum over a row's keys adds its terms in the scalar function's order, in registers (the
    tuple helpers above), and a row whose key list extends row a − 1's continues its sums
    (the same additions)."""
    m = V.shape[0]
    cv = q[0]
    d = q[1]
    wk = r[0]
    for a in range(m):
        w = 1.0 / cnt[a]
        wk[a, 0] = w
        wk[a, 1] = 0.5 * w
    # C v, B = C V and R = C (V∘V) / 2 − B∘B from the key sums of v, V and V∘V
    s = ZERO
    for a in range(m):
        if pre[a] < 0:
            s = ZERO
        for j in range(_first_key(pre, cnt, a), cnt[a]):
            e = idx[a, j]
            s = _plus(s, V[e, e])
        _store(cv[a], _times(wk[a, 0], s))
    for c in range(m):
        x = ZERO
        y = ZERO
        for a in range(m):
            if pre[a] < 0:
                x = ZERO
                y = ZERO
            for j in range(_first_key(pre, cnt, a), cnt[a]):
                v = _lanes_of(V[idx[a, j], c])
                x = _plus(x, v)
                y = _plus_prod(y, v, v)
            w = wk[a, 0]
            hw = wk[a, 1]
            b0, f0 = _moment(w, hw, x[0], y[0])
            b1, f1 = _moment(w, hw, x[1], y[1])
            b2, f2 = _moment(w, hw, x[2], y[2])
            b3, f3 = _moment(w, hw, x[3], y[3])
            b4, f4 = _moment(w, hw, x[4], y[4])
            b5, f5 = _moment(w, hw, x[5], y[5])
            b6, f6 = _moment(w, hw, x[6], y[6])
            b7, f7 = _moment(w, hw, x[7], y[7])
            _store(B[a, c], (b0, b1, b2, b3, b4, b5, b6, b7))
            _store(F[a, c], (f0, f1, f2, f3, f4, f5, f6, f7))
    # W = B Cᵀ and U = R Cᵀ: key sums, then times 1/k
    for c in range(m):
        x = ZERO
        y = ZERO
        for a in range(m):
            if pre[a] < 0:
                x = ZERO
                y = ZERO
            for j in range(_first_key(pre, cnt, a), cnt[a]):
                e = idx[a, j]
                x = _plus(x, B[c, e])
                y = _plus(y, F[c, e])
            _store(W[c, a], _times(wk[a, 0], x))
            _store(U[c, a], _times(wk[a, 0], y))
    # D V (D has the pattern of C), into F; D's row vanishes identically when k ≤ 2
    for a in range(m):
        k = cnt[a]
        if k <= 2:
            for c in range(m):
                _store(F[a, c], ZERO)
            continue
        w = wk[a, 0]
        va = V[a, a]
        wa = W[a, a]
        ca = cv[a]
        h = (2.0 * wa[0] - ca[0], 2.0 * wa[1] - ca[1], 2.0 * wa[2] - ca[2], 2.0 * wa[3] - ca[3],
             2.0 * wa[4] - ca[4], 2.0 * wa[5] - ca[5], 2.0 * wa[6] - ca[6], 2.0 * wa[7] - ca[7])
        for j in range(k):
            e = idx[a, j]
            for l in range(NL):
                d[j, l] = 0.5 * w * va[l] * (V[e, e, l] - 2.0 * B[a, e, l] + h[l])
        for c in range(0, m - 1, 2):
            _key_dot_pair_lanes(d, V, c, idx, a, k, F[a, c], F[a, c + 1])
        if m % 2 == 1:
            _key_dot_lanes(d, V, m - 1, idx, a, k, F[a, m - 1])
    # b_att = V∘T + (D V + V Dᵀ), T = (U + Uᵀ) + W∘W: the entries (a, b) and (b, a) at once,
    # the diagonal apart (two stores to one address kept the lanes from vectorising)
    for a in range(m):
        for b in range(a):
            for l in range(NL):
                t = U[a, b, l] + U[b, a, l]
                g = F[a, b, l] + F[b, a, l]
                v = V[a, b, l]
                x = W[a, b, l]
                y = W[b, a, l]
                o = out[a, b, l] + scale * (v * (t + x * x) + g)
                p = out[b, a, l] + scale * (v * (t + y * y) + g)
                out[a, b, l] = o
                out[b, a, l] = p
        for l in range(NL):
            t = U[a, a, l] + U[a, a, l]
            g = F[a, a, l] + F[a, a, l]
            x = W[a, a, l]
            out[a, a, l] = out[a, a, l] + scale * (V[a, a, l] * (t + x * x) + g)


@njit(cache=True, inline="always")
def masked_noise_lanes(L, V, Z, Gp, coef, idx, cnt, T, F, LG, q, out):
    """:func:`sde.masked_coefficients.masked_noise_into` on lanes:
    ``out = sqrt(a_lin) (L Z) Lᵀ + c (F + Fᵀ)``, ``F = Δ V`` (all (m, m, NL); T, F, LG work).

    ``q`` (≥ 2, m, NL) holds a row of Δ on its keys in row 1 (:func:`_delta_row_lanes`).
    Every product entry is a sum in registers in the scalar function's order."""
    m = L.shape[0]
    sa = math.sqrt(coef.a_lin)
    c = coef.att_noise
    for i in range(m):
        for j in range(m):
            _dot_lanes(L[i], Z[:, j], 0, i + 1, T[i, j])
    if c != 0.0:
        zh = q[1]
        for i in range(m):
            for j in range(m):
                _dot_lanes(L[i], Gp[:, j], 0, i + 1, LG[i, j])
        for a in range(m):
            _delta_row_lanes(LG, L, idx, cnt, a, zh)
            k = cnt[a]
            for t in range(0, m - 1, 2):
                _key_dot_pair_lanes(zh, V, t, idx, a, k, F[a, t], F[a, t + 1])
            if m % 2 == 1:
                _key_dot_lanes(zh, V, m - 1, idx, a, k, F[a, m - 1])
    for i in range(m):
        for j in range(i + 1):
            _dot_lanes(T[i], L[j], 0, j + 1, out[i, j])
    # mirrored, the diagonal apart (as the drift's last step)
    if c != 0.0:
        for i in range(m):
            for j in range(i):
                for l in range(NL):
                    x = sa * out[i, j, l] + c * (F[i, j, l] + F[j, i, l])
                    out[i, j, l] = x
                    out[j, i, l] = x
            for l in range(NL):
                out[i, i, l] = sa * out[i, i, l] + c * (F[i, i, l] + F[i, i, l])
    else:
        for i in range(m):
            for j in range(i):
                for l in range(NL):
                    x = sa * out[i, j, l]
                    out[i, j, l] = x
                    out[j, i, l] = x
            for l in range(NL):
                out[i, i, l] = sa * out[i, i, l]
