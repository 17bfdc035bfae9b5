"""Numba kernels of the exact reduced samplers of the shaped sub-layers (docs/theory.md §5).

One kernel call applies one sub-layer to every path of a task: RNG block k (state row
``rows[k]``, :mod:`finite.streams`) holds the paths ``bounds[k]:bounds[k+1]`` of the state
``Vh`` (p, H, m, m), updated in place. Each path is factored, drawn and updated in one go,
so a path's draws come in one run from its block's stream (documented order below), and the
result does not depend on which blocks share a call or a thread.

Draw order of one path (row-major matrices; :mod:`finite.inline_rng` for each matrix):

* shaped attention, for each head h: ``G_Q G_Kᵀ``, then M_h (m × m), then
  ``W_h ~ Wishart_m(n/H − m)``;
* residual shaped MLP: the hidden Gram — column j = 0 … n−1 of G, its m normals
  ``G[0, j] … G[m−1, j]`` — then for each head M_h and W_h;
* Li–Nica–Roy MLP: the hidden Gram only.

The hidden Gram ``K = s(L G) s(L G)ᵀ / n`` is one fused pass over the columns of G: each
column's m normals are drawn, mapped through L and the activation, and their products added
to the m(m+1)/2 running sums; G is never stored (:func:`hidden_gram_path`). Its normals,
almost all the draws of a sampler, and every other draw come from :mod:`finite.inline_rng`.

Factorisations (:func:`factor_into`): Cholesky, else an eigen-decomposition with round-off
negative eigenvalues clipped (flag 1), else failure (flag 2, L = 0; the path is marked dead by
the sampler). ``clipped[i]`` counts a path's clipped factorisations in this call, as the
numpy form did: the factors of V, of every V_h, and of the hidden Gram.
"""
import math

import numpy as np
from numba import njit

from sde.coefficients import cholesky_into

from . import inline_rng

#: activation codes of the fused hidden Gram: two-slope ReLU ``(s₊, s₋)``, ``s tanh(x/s)``
#: (``(s, ·)``), the identity, or a Gram supplied by the caller (any other activation)
ACT_RELU, ACT_TANH, ACT_IDENTITY, ACT_GIVEN = 0, 1, 2, 3


@njit(cache=True)
def factor_into(V, L, tol):
    """PSD-safe factor ``L Lᵀ = V`` of one symmetric (m, m) matrix; returns the flag
    0 (Cholesky), 1 (eigenvalues clipped) or 2 (non-finite, or an eigenvalue below
    ``-tol · max|w|``: L = 0)."""
    m = V.shape[0]
    for i in range(m):
        for j in range(m):
            if not np.isfinite(V[i, j]):
                L[:, :] = 0.0
                return 2
    if cholesky_into(V, L):
        return 0
    A = 0.5 * (V + V.T)
    w, Q = np.linalg.eigh(A)
    scale = 0.0
    for i in range(m):
        scale = max(scale, abs(w[i]))
    if w[0] < -tol * scale:
        L[:, :] = 0.0
        return 2
    for i in range(m):
        r = np.sqrt(max(w[i], 0.0))
        for j in range(m):
            L[j, i] = Q[j, i] * r
    return 1


#: columns of G drawn per chunk of the hidden Gram (the chunk, m × CHUNK doubles, stays in L1)
GRAM_CHUNK = 128


@njit(cache=True)
def hidden_gram_path(row, L, lower, act, a1, a2, width, K, G, S, acc):
    """``K = φ(L G) φ(L G)ᵀ / n`` for one path, G (m, n) drawn column by column from ``row``.

    One pass over the columns in chunks of :data:`GRAM_CHUNK`: a chunk's m × CHUNK normals
    are drawn (column j's m normals in a run), mapped through L and φ, and their products
    added to the running sums; G is never stored whole. The sums are kept per column slot
    (``acc[q, t]`` sums pair q = (a, b ≤ a) over the columns j ≡ t mod CHUNK), so every
    update is elementwise (SIMD, no reassociation), and are added over t in order at the
    end. ``lower``: L is lower triangular (Cholesky), so row a of ``L g`` needs only
    g[0..a]. φ by ``act``: ReLU with slopes (a1, a2), ``a1 tanh(x/a1)`` or the identity.
    Scratch: ``G``, ``S`` (m, GRAM_CHUNK), ``acc`` (m(m+1)/2, GRAM_CHUNK).
    """
    m = L.shape[0]
    if m == 3 and lower and act == ACT_RELU:
        _hidden_gram_relu3(row, L, a1, a2, width, K, G, acc)
        return
    inc_hi, inc_lo = row[2], row[3]
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = inline_rng.paired_start(row[0], row[1], inc_hi, inc_lo)
    slots = min(GRAM_CHUNK, width)
    acc[:, :slots] = 0.0
    j0 = 0
    while j0 < width:
        c = min(GRAM_CHUNK, width - j0)
        for j in range(c):
            for b in range(m):
                G[b, j], a_hi, a_lo, b_hi, b_lo = inline_rng.standard_normal_paired(
                    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)
        for a in range(m):
            top = a + 1 if lower else m
            for j in range(c):
                S[a, j] = 0.0
            for b in range(top):
                lab = L[a, b]
                for j in range(c):
                    S[a, j] += lab * G[b, j]
            if act == ACT_RELU:
                for j in range(c):
                    x = S[a, j]
                    S[a, j] = a1 * x if x > 0.0 else a2 * x
            elif act == ACT_TANH:
                for j in range(c):
                    S[a, j] = a1 * math.tanh(S[a, j] / a1)
        q = 0
        for a in range(m):
            for b in range(a + 1):
                for j in range(c):
                    acc[q, j] += S[a, j] * S[b, j]
                q += 1
        j0 += c
    row[0], row[1] = inline_rng.paired_end(a_hi, a_lo, inc_hi, inc_lo)
    _fold_gram(acc, slots, m, width, K)


@njit(cache=True)
def _fold_gram(acc, slots, m, width, K):
    """K (m, m) = the column sums of the lower-triangle accumulators ``acc[q, :slots]``
    (q over (a, b ≤ a) row by row), summed in slot order, divided by ``width``, mirrored."""
    inv = 1.0 / width
    q = 0
    for a in range(m):
        for b in range(a + 1):
            tot = 0.0
            for t in range(slots):
                tot += acc[q, t]
            K[a, b] = tot * inv
            K[b, a] = tot * inv
            q += 1


@njit(cache=True, inline="always")
def _relu3_products(g0, g1, g2, l00, l10, l11, l20, l21, l22, a1, a2):
    """The six products ``s_a s_b`` (b ≤ a, row by row) of one column: ``s = φ(L g)``, L
    lower triangular, φ the two-slope ReLU (a1 for x > 0, else a2).

    The generic pass's rows start from 0.0 (``0.0 + l00 g0 + …``); without that addition a
    row differs only when it is zero (−0.0 for +0.0), and a signed zero cannot reach K: the
    sums start at +0.0, and +0.0 + (−0.0) = +0.0."""
    x0 = l00 * g0
    x1 = l10 * g0 + l11 * g1
    x2 = l20 * g0 + l21 * g1 + l22 * g2
    s0 = a1 * x0 if x0 > 0.0 else a2 * x0
    s1 = a1 * x1 if x1 > 0.0 else a2 * x1
    s2 = a1 * x2 if x2 > 0.0 else a2 * x2
    return s0 * s0, s1 * s0, s1 * s1, s2 * s0, s2 * s1, s2 * s2


@njit(cache=True, inline="always")
def relu3_chunk(G, acc, c, first, L3, a1, a2):
    """The m = 3 ReLU pass's arithmetic on the chunk's first c columns of G (3, GRAM_CHUNK):
    each column's six products (:func:`_relu3_products`; ``L3`` = L's lower triangle row by
    row) added to its slot sums ``acc`` (6, GRAM_CHUNK), one vectorised loop. ``first``: the
    first chunk, which sets every slot: ``0.0 + p`` is what adding p to a zeroed sum gives,
    bit for bit, without a pass that zeroes the sums first."""
    l00, l10, l11, l20, l21, l22 = L3
    A0, A1, A2, A3, A4, A5 = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    G0, G1, G2 = G[0], G[1], G[2]
    if first:
        for j in range(c):
            p0, p1, p2, p3, p4, p5 = _relu3_products(G0[j], G1[j], G2[j], l00, l10, l11, l20,
                                                     l21, l22, a1, a2)
            A0[j] = 0.0 + p0
            A1[j] = 0.0 + p1
            A2[j] = 0.0 + p2
            A3[j] = 0.0 + p3
            A4[j] = 0.0 + p4
            A5[j] = 0.0 + p5
    else:
        for j in range(c):
            p0, p1, p2, p3, p4, p5 = _relu3_products(G0[j], G1[j], G2[j], l00, l10, l11, l20,
                                                     l21, l22, a1, a2)
            A0[j] += p0
            A1[j] += p1
            A2[j] += p2
            A3[j] += p3
            A4[j] += p4
            A5[j] += p5


@njit(cache=True)
def _hidden_gram_relu3(row, L, a1, a2, width, K, G, acc):
    """:func:`hidden_gram_path` for m = 3, L lower triangular and the two-slope ReLU: the
    same draws and the same operations in the same order (so the same bits; the rows' leading
    additions of 0.0 dropped, :func:`_relu3_products`), written out for three rows so that
    the map through L, the ReLU and the six products run in one vectorised pass over each
    chunk (:func:`relu3_chunk`) with L's entries in registers."""
    inc_hi, inc_lo = row[2], row[3]
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = inline_rng.paired_start(row[0], row[1], inc_hi, inc_lo)
    L3 = (L[0, 0], L[1, 0], L[1, 1], L[2, 0], L[2, 1], L[2, 2])
    slots = min(GRAM_CHUNK, width)
    G0, G1, G2 = G[0], G[1], G[2]
    j0 = 0
    while j0 < width:
        c = min(GRAM_CHUNK, width - j0)
        for j in range(c):
            G0[j], G1[j], G2[j], a_hi, a_lo, b_hi, b_lo = inline_rng.normals3_paired(
                a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)
        relu3_chunk(G, acc, c, j0 == 0, L3, a1, a2)
        j0 += c
    row[0], row[1] = inline_rng.paired_end(a_hi, a_lo, inc_hi, inc_lo)
    fold_gram3(acc, slots, width, K)


@njit(cache=True)
def fold_gram3(acc, slots, width, K):
    """:func:`_fold_gram` for m = 3: the six sums run side by side (six independent chains
    of additions instead of one after the other), each still in slot order: the same bits."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    for t in range(slots):
        t0 += acc[0, t]
        t1 += acc[1, t]
        t2 += acc[2, t]
        t3 += acc[3, t]
        t4 += acc[4, t]
        t5 += acc[5, t]
    inv = 1.0 / width
    K[0, 0] = t0 * inv
    K[1, 0] = K[0, 1] = t1 * inv
    K[1, 1] = t2 * inv
    K[2, 0] = K[0, 2] = t3 * inv
    K[2, 1] = K[1, 2] = t4 * inv
    K[2, 2] = t5 * inv


@njit(cache=True, inline="always")
def _matmul(A, B, out):
    m, k = A.shape
    q = B.shape[1]
    for i in range(m):
        for j in range(q):
            acc = 0.0
            for t in range(k):
                acc += A[i, t] * B[t, j]
            out[i, j] = acc


@njit(cache=True, inline="always")
def _matmul_bt(A, B, out):
    """out = A Bᵀ."""
    m, k = A.shape
    q = B.shape[0]
    for i in range(m):
        for j in range(q):
            acc = 0.0
            for t in range(k):
                acc += A[i, t] * B[j, t]
            out[i, j] = acc


@njit(cache=True)
def _draw_normals(row, out):
    hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
    m, q = out.shape
    for a in range(m):
        for b in range(q):
            out[a, b], hi, lo = inline_rng.standard_normal(hi, lo, inc_hi, inc_lo)
    row[0] = hi
    row[1] = lo


@njit(cache=True)
def residual_update(Vh, P, Lh, M, W, lam, cross_coef, gram_coef, T1, T2, T3):
    """``V'_h = λ² V_h + κ (P M Lhᵀ + (P M Lhᵀ)ᵀ) + μ P (M Mᵀ + W) Pᵀ`` in place on Vh (m, m):
    the common form of the attention (P = A L) and MLP (P = R) sub-blocks' value/post-weight
    part (docs/theory.md §5.2, §5.6); κ = ``cross_coef``, μ = ``gram_coef``."""
    m = Vh.shape[0]
    _matmul(P, M, T1)                 # P M
    _matmul_bt(T1, Lh, T2)            # P M Lhᵀ
    _matmul_bt(M, M, T3)              # M Mᵀ
    for a in range(m):
        for b in range(m):
            T3[a, b] += W[a, b]
    _matmul(P, T3, T1)                # P (M Mᵀ + W)
    for a in range(m):
        for b in range(a + 1):
            acc = 0.0
            for t in range(m):
                acc += T1[a, t] * P[b, t]
            v = (lam * lam * 0.5 * (Vh[a, b] + Vh[b, a]) + cross_coef * (T2[a, b] + T2[b, a])
                 + gram_coef * acc)
            Vh[a, b] = v
            Vh[b, a] = v


@njit(cache=True)
def _factors(Vh_i, L, Lh, V, tol):
    """Factors of V = Σ_h V_h (into L) and of each V_h (into Lh); (clipped, failed)."""
    H, m, _ = Vh_i.shape
    for a in range(m):
        for b in range(m):
            acc = 0.0
            for h in range(H):
                acc += Vh_i[h, a, b]
            V[a, b] = acc
    f = factor_into(V, L, tol)
    clipped = 1 if f == 1 else 0
    failed = f == 2
    for h in range(H):
        if H == 1:
            Lh[0, :, :] = L
            fh = f
        else:
            fh = factor_into(Vh_i[h], Lh[h], tol)
        clipped += 1 if fh == 1 else 0
        failed = failed or fh == 2
    return clipped, failed


@njit(cache=True, nogil=True)
def attention_kernel(rows, bounds, Vh, gamma, tau0, width, key_width, mask, centre, tol,
                     failed, clipped, rec, record):
    """Shaped attention sub-block (docs/theory.md §5.2, §5.5) on every path, in place.

    ``mask`` (m, m) 0/1 (all ones: complete) and ``centre`` its centring matrix C
    (``11ᵀ/m`` for the complete mask): ``A = I + softmax_mask(L G_Q G_Kᵀ Lᵀ/(τ0 sqrt(n n_k)))
    − C``. ``record``: also write each path's draws ``G_Q G_Kᵀ, M, W`` into ``rec[0..2]``
    (3, p, H, m, m) (for :mod:`finite.consensus`)."""
    p, H, m, _ = Vh.shape
    lam = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    kappa = lam * gamma / math.sqrt(width)
    mu = gamma * gamma / width
    scale = 1.0 / (tau0 * math.sqrt(width * key_width))
    kw = width // H - m
    V = np.empty((m, m))
    L = np.empty((m, m))
    Lh = np.empty((H, m, m))
    QK = np.empty((m, m))
    M = np.empty((m, m))
    W = np.empty((m, m))
    A = np.empty((m, m))
    AL = np.empty((m, m))
    T1 = np.empty((m, m))
    T2 = np.empty((m, m))
    T3 = np.empty((m, m))
    work = np.empty((3, m, max(m, key_width, kw)))
    for k in range(rows.shape[0]):
        row = rows[k]
        for i in range(bounds[k], bounds[k + 1]):
            c, f = _factors(Vh[i], L, Lh, V, tol)
            clipped[i] += c
            failed[i] = failed[i] or f
            for h in range(H):
                inline_rng.query_key_into(row, key_width, QK, work)
                _draw_normals(row, M)
                inline_rng.wishart_into(row, kw, W, work[2])
                if record:
                    rec[0, i, h] = QK
                    rec[1, i, h] = M
                    rec[2, i, h] = W
                attention_matrix_into(L, QK, scale, mask, centre, A, T1, T2)
                _matmul(A, L, AL)
                residual_update(Vh[i, h], AL, Lh[h], M, W, lam, kappa, mu, T1, T2, T3)


@njit(cache=True)
def attention_matrix_into(L, QK, scale, mask, centre, A, T1, T2):
    """``A = I + softmax_mask(scale · L QK Lᵀ) − C`` into A (m, m): the softmax over the
    keys allowed by the 0/1 ``mask`` (max-subtracted), C = ``centre``. T1, T2 scratch."""
    m = A.shape[0]
    _matmul(L, QK, T1)
    _matmul_bt(T1, L, T2)     # logits Y = L QK Lᵀ
    for a in range(m):
        top = -np.inf
        for b in range(m):
            if mask[a, b] != 0.0:
                top = max(top, T2[a, b] * scale)
        tot = 0.0
        for b in range(m):
            e = math.exp(T2[a, b] * scale - top) if mask[a, b] != 0.0 else 0.0
            A[a, b] = e
            tot += e
        for b in range(m):
            A[a, b] = A[a, b] / tot - centre[a, b] + (1.0 if a == b else 0.0)


@njit(cache=True)
def attention_update_given(Vh, L, Lh, QK, M, W, gamma, scale, width, mask, centre):
    """The attention map of :func:`attention_kernel` with the draws given: Vh, Lh, QK, M, W
    (p, H, m, m), L (p, m, m); Vh updated in place."""
    p, H, m, _ = Vh.shape
    lam = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    A = np.empty((m, m))
    AL = np.empty((m, m))
    T1 = np.empty((m, m))
    T2 = np.empty((m, m))
    T3 = np.empty((m, m))
    for i in range(p):
        for h in range(H):
            attention_matrix_into(L[i], QK[i, h], scale, mask, centre, A, T1, T2)
            _matmul(A, L[i], AL)
            residual_update(Vh[i, h], AL, Lh[i, h], M[i, h], W[i, h], lam,
                            lam * gamma / math.sqrt(width), gamma * gamma / width, T1, T2, T3)


@njit(cache=True)
def residual_update_given(Vh, P, Lh, M, W, lam, cross_coef, gram_coef):
    """:func:`residual_update` on every (path, head): Vh, Lh, M, W (p, H, m, m), P (p, m, m)."""
    p, H, m, _ = Vh.shape
    T1 = np.empty((m, m))
    T2 = np.empty((m, m))
    T3 = np.empty((m, m))
    for i in range(p):
        for h in range(H):
            residual_update(Vh[i, h], P[i], Lh[i, h], M[i, h], W[i, h], lam, cross_coef,
                            gram_coef, T1, T2, T3)


@njit(cache=True, nogil=True)
def mlp_kernel(rows, bounds, Vh, residual, gamma, c, width, act, a1, a2, K_given, tol,
               failed, clipped):
    """Shaped MLP sub-block on every path, in place: residual (docs/theory.md §5.6) or
    Li–Nica–Roy (``residual`` False, §5.7: ``V' = c K``, one head). ``act`` in
    ``ACT_RELU, ACT_TANH, ACT_IDENTITY`` draws the hidden Gram here; ``ACT_GIVEN`` reads
    it from ``K_given`` (p, m, m) (an activation without a kernel form)."""
    p, H, m, _ = Vh.shape
    lam = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    kappa = lam * gamma * math.sqrt(c / width)
    mu = gamma * gamma * c / width
    kw = width // H - m
    V = np.empty((m, m))
    L = np.empty((m, m))
    Lh = np.empty((H, m, m))
    K = np.empty((m, m))
    R = np.empty((m, m))
    M = np.empty((m, m))
    W = np.empty((m, m))
    T1 = np.empty((m, m))
    T2 = np.empty((m, m))
    T3 = np.empty((m, m))
    G = np.empty((m, GRAM_CHUNK))
    S = np.empty((m, GRAM_CHUNK))
    acc = np.empty((m * (m + 1) // 2, GRAM_CHUNK))
    work = np.empty((m, max(m, kw)))
    for k in range(rows.shape[0]):
        row = rows[k]
        for i in range(bounds[k], bounds[k + 1]):
            if residual:
                cl, f = _factors(Vh[i], L, Lh, V, tol)
            else:
                fl = factor_into(Vh[i, 0], L, tol)
                cl, f = (1 if fl == 1 else 0), fl == 2
            if act == ACT_GIVEN:
                K[:, :] = K_given[i]
            else:
                hidden_gram_path(row, L, cl == 0 and not f, act, a1, a2, width, K, G, S, acc)
            if not residual:
                for a in range(m):
                    for b in range(m):
                        Vh[i, 0, a, b] = c * K[a, b]
                clipped[i] += cl
                failed[i] = failed[i] or f
                continue
            fr = factor_into(K, R, tol)
            clipped[i] += cl + (1 if fr == 1 else 0)
            failed[i] = failed[i] or f or fr == 2
            for h in range(H):
                _draw_normals(row, M)
                inline_rng.wishart_into(row, kw, W, work)
                residual_update(Vh[i, h], R, Lh[h], M, W, lam, kappa, mu, T1, T2, T3)
