"""The reduced samplers' kernels written out for m = 3 tokens and one head (the paper grid).

:mod:`finite.reduced_kernels` keeps every (m, m) matrix of a path in small arrays and loops
over generic m; for m = 3 that bookkeeping costs more than the arithmetic. The kernels here
hold a path's matrices as row-major 9-tuples of scalars (registers), draw from the block's
PCG64 state kept in local variables, and perform exactly the operations of the generic
kernels in the same order: the same draws from the same stream and the same bits
(tests/test_reduced3.py compares them path by path). A factorisation that is not a plain
Cholesky (non-finite, or not positive definite) falls back to
:func:`finite.reduced_kernels.factor_into`. The hidden Gram is
:func:`finite.reduced_kernels.hidden_gram_path` (its m = 3 ReLU pass when the factor is the
Cholesky one, the generic pass otherwise).

:func:`attention_kernel_for` and :func:`mlp_kernel_for` pick these kernels where they apply
(m = 3, one head; attention without recorded draws, key width ≥ 3; the residual MLP with a
two-slope ReLU; n − 3 ≥ 3 for the Bartlett Wishart draw) and the generic kernels otherwise;
the arguments are the generic kernels'.
"""
import math

import numpy as np
from numba import njit

from . import inline_rng
from . import reduced_kernels as rk


def attention_kernel_for(m, heads, record, width, key_width):
    """The attention kernel for these sizes (:func:`finite.reduced_kernels.attention_kernel`'s
    signature)."""
    if m == 3 and heads == 1 and not record and key_width >= 3 and width - 3 >= 3:
        return attention_kernel3
    return rk.attention_kernel


def mlp_kernel_for(m, heads, residual, width, act):
    """The MLP kernel for these sizes (:func:`finite.reduced_kernels.mlp_kernel`'s signature)."""
    if m == 3 and heads == 1 and residual and act == rk.ACT_RELU and width - 3 >= 3:
        return mlp_kernel3
    return rk.mlp_kernel


@njit(cache=True, inline="always")
def mm(A, B):
    """A B of two 3 × 3 row-major 9-tuples: ``0.0 + Σ_t A[i, t] B[t, j]``, t in order."""
    a00, a01, a02, a10, a11, a12, a20, a21, a22 = A
    b00, b01, b02, b10, b11, b12, b20, b21, b22 = B
    return (0.0 + a00 * b00 + a01 * b10 + a02 * b20,
            0.0 + a00 * b01 + a01 * b11 + a02 * b21,
            0.0 + a00 * b02 + a01 * b12 + a02 * b22,
            0.0 + a10 * b00 + a11 * b10 + a12 * b20,
            0.0 + a10 * b01 + a11 * b11 + a12 * b21,
            0.0 + a10 * b02 + a11 * b12 + a12 * b22,
            0.0 + a20 * b00 + a21 * b10 + a22 * b20,
            0.0 + a20 * b01 + a21 * b11 + a22 * b21,
            0.0 + a20 * b02 + a21 * b12 + a22 * b22)


@njit(cache=True, inline="always")
def mm_bt(A, B):
    """A Bᵀ of two 3 × 3 row-major 9-tuples: ``0.0 + Σ_t A[i, t] B[j, t]``, t in order."""
    a00, a01, a02, a10, a11, a12, a20, a21, a22 = A
    b00, b01, b02, b10, b11, b12, b20, b21, b22 = B
    return (0.0 + a00 * b00 + a01 * b01 + a02 * b02,
            0.0 + a00 * b10 + a01 * b11 + a02 * b12,
            0.0 + a00 * b20 + a01 * b21 + a02 * b22,
            0.0 + a10 * b00 + a11 * b01 + a12 * b02,
            0.0 + a10 * b10 + a11 * b11 + a12 * b12,
            0.0 + a10 * b20 + a11 * b21 + a12 * b22,
            0.0 + a20 * b00 + a21 * b01 + a22 * b02,
            0.0 + a20 * b10 + a21 * b11 + a22 * b12,
            0.0 + a20 * b20 + a21 * b21 + a22 * b22)



@njit(cache=True, inline="always")
def load(A):
    """A (3, 3) array as a row-major 9-tuple."""
    return (A[0, 0], A[0, 1], A[0, 2], A[1, 0], A[1, 1], A[1, 2], A[2, 0], A[2, 1], A[2, 2])


@njit(cache=True, inline="always")
def store(T, A):
    """A row-major 9-tuple into the (3, 3) array A."""
    A[0, 0], A[0, 1], A[0, 2], A[1, 0], A[1, 1], A[1, 2], A[2, 0], A[2, 1], A[2, 2] = T


@njit(cache=True, inline="always")
def factor(V, Vbuf, Lbuf, tol):
    """:func:`finite.reduced_kernels.factor_into` of the 9-tuple V: ``(flag, L)``, L a
    9-tuple. Cholesky written out (``sde.coefficients.cholesky_into``'s operations); a
    non-finite or not positive definite V goes to ``factor_into`` (through Vbuf, Lbuf)."""
    v00, v01, v02, v10, v11, v12, v20, v21, v22 = V
    fin = ((v00 - v00) + (v01 - v01) + (v02 - v02) + (v10 - v10) + (v11 - v11)
           + (v12 - v12) + (v20 - v20) + (v21 - v21) + (v22 - v22))
    if fin == 0.0 and v00 > 0.0:
        d0 = np.sqrt(v00)
        l10 = v10 / d0
        l20 = v20 / d0
        acc = v11 - l10 * l10
        if acc > 0.0:
            d1 = np.sqrt(acc)
            l21 = (v21 - l20 * l10) / d1
            acc = v22 - l20 * l20 - l21 * l21
            if acc > 0.0:
                return 0, (d0, 0.0, 0.0, l10, d1, 0.0, l20, l21, np.sqrt(acc))
    store(V, Vbuf)
    f = rk.factor_into(Vbuf, Lbuf, tol)
    return f, load(Lbuf)


@njit(cache=True, inline="always")
def normals9(hi, lo, ihi, ilo):
    """Nine normals, a row-major 3 × 3 Gaussian: (tuple, hi, lo)."""
    x0, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x1, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x2, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x3, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x4, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x5, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x6, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x7, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    x8, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    return (x0, x1, x2, x3, x4, x5, x6, x7, x8), hi, lo


@njit(cache=True)
def chi_constants(k):
    """What :func:`bartlett` needs for χ²_k, χ²_{k−1}, χ²_{k−2}: ``(fast, b0, c0, b1, c1,
    b2, c2)``, the Marsaglia–Tsang constants of the shapes (k − i)/2 computed once per
    kernel call (``fast``: all shapes > 1, else the draws go through
    :func:`finite.inline_rng.chisquare`)."""
    b0, c0 = inline_rng.gamma_constants(float(k) / 2.0)
    b1, c1 = inline_rng.gamma_constants(float(k - 1) / 2.0)
    b2, c2 = inline_rng.gamma_constants(float(k - 2) / 2.0)
    return float(k - 2) / 2.0 > 1.0, b0, c0, b1, c1, b2, c2


@njit(cache=True, inline="always")
def chisquare(df, b, c, fast, hi, lo, ihi, ilo):
    """χ²_df as :func:`finite.inline_rng.chisquare` (``2 · Gamma(df/2)``), with the gamma
    constants (b, c) given when ``fast``: (x, hi, lo)."""
    if fast:
        g, hi, lo = inline_rng.gamma_mt(b, c, hi, lo, ihi, ilo)
        return 2.0 * g, hi, lo
    return inline_rng.chisquare(df, hi, lo, ihi, ilo)


@njit(cache=True, inline="always")
def bartlett(k, cst, hi, lo, ihi, ilo):
    """:func:`finite.inline_rng.bartlett_into` for m = 3: the lower triangle
    ``(b00, b10, b11, b20, b21, b22)`` of the Bartlett factor of ``Wishart_3(I, k)``;
    ``cst = chi_constants(k)``."""
    fast, g0b, g0c, g1b, g1c, g2b, g2c = cst
    x, hi, lo = chisquare(float(k), g0b, g0c, fast, hi, lo, ihi, ilo)
    b00 = np.sqrt(x)
    x, hi, lo = chisquare(float(k - 1), g1b, g1c, fast, hi, lo, ihi, ilo)
    b11 = np.sqrt(x)
    x, hi, lo = chisquare(float(k - 2), g2b, g2c, fast, hi, lo, ihi, ilo)
    b22 = np.sqrt(x)
    b10, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    b20, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    b21, hi, lo = inline_rng.standard_normal(hi, lo, ihi, ilo)
    return (b00, b10, b11, b20, b21, b22), hi, lo


@njit(cache=True, inline="always")
def wishart(k, cst, hi, lo, ihi, ilo):
    """:func:`finite.inline_rng.wishart_into` for m = 3, k ≥ 3: a 9-tuple."""
    (b00, b10, b11, b20, b21, b22), hi, lo = bartlett(k, cst, hi, lo, ihi, ilo)
    w00 = 0.0 + b00 * b00
    w10 = 0.0 + b10 * b00
    w11 = 0.0 + b10 * b10 + b11 * b11
    w20 = 0.0 + b20 * b00
    w21 = 0.0 + b20 * b10 + b21 * b11
    w22 = 0.0 + b20 * b20 + b21 * b21 + b22 * b22
    return (w00, w10, w20, w10, w11, w21, w20, w21, w22), hi, lo


@njit(cache=True, inline="always")
def query_key(k, cst, hi, lo, ihi, ilo):
    """:func:`finite.inline_rng.query_key_into` for m = 3, key width k ≥ 3: ``M_Q Bᵀ``."""
    (q00, q01, q02, q10, q11, q12, q20, q21, q22), hi, lo = normals9(hi, lo, ihi, ilo)
    (b00, b10, b11, b20, b21, b22), hi, lo = bartlett(k, cst, hi, lo, ihi, ilo)
    return (0.0 + q00 * b00,
            0.0 + q00 * b10 + q01 * b11,
            0.0 + q00 * b20 + q01 * b21 + q02 * b22,
            0.0 + q10 * b00,
            0.0 + q10 * b10 + q11 * b11,
            0.0 + q10 * b20 + q11 * b21 + q12 * b22,
            0.0 + q20 * b00,
            0.0 + q20 * b10 + q21 * b11,
            0.0 + q20 * b20 + q21 * b21 + q22 * b22), hi, lo


@njit(cache=True, inline="always")
def softmax_row(y0, y1, y2, k0, k1, k2, scale):
    """One row of :func:`finite.reduced_kernels.attention_matrix_into`'s masked softmax:
    logits y, mask entries k: (e0, e1, e2, total)."""
    top = -np.inf
    if k0 != 0.0:
        top = max(top, y0 * scale)
    if k1 != 0.0:
        top = max(top, y1 * scale)
    if k2 != 0.0:
        top = max(top, y2 * scale)
    e0 = math.exp(y0 * scale - top) if k0 != 0.0 else 0.0
    e1 = math.exp(y1 * scale - top) if k1 != 0.0 else 0.0
    e2 = math.exp(y2 * scale - top) if k2 != 0.0 else 0.0
    return e0, e1, e2, 0.0 + e0 + e1 + e2


@njit(cache=True, inline="always")
def attention_matrix(L, QK, scale, mk, ce):
    """:func:`finite.reduced_kernels.attention_matrix_into` on 9-tuples (mask mk, centre ce)."""
    y = mm_bt(mm(L, QK), L)
    e0, e1, e2, t0 = softmax_row(y[0], y[1], y[2], mk[0], mk[1], mk[2], scale)
    e3, e4, e5, t1 = softmax_row(y[3], y[4], y[5], mk[3], mk[4], mk[5], scale)
    e6, e7, e8, t2 = softmax_row(y[6], y[7], y[8], mk[6], mk[7], mk[8], scale)
    return (e0 / t0 - ce[0] + 1.0, e1 / t0 - ce[1] + 0.0, e2 / t0 - ce[2] + 0.0,
            e3 / t1 - ce[3] + 0.0, e4 / t1 - ce[4] + 1.0, e5 / t1 - ce[5] + 0.0,
            e6 / t2 - ce[6] + 0.0, e7 / t2 - ce[7] + 0.0, e8 / t2 - ce[8] + 1.0)


@njit(cache=True, inline="always")
def residual_update(Vh, P, Lh, M, W, lam, cross_coef, gram_coef):
    """:func:`finite.reduced_kernels.residual_update` on 9-tuples, written into the (3, 3)
    array Vh."""
    T2 = mm_bt(mm(P, M), Lh)
    T3 = mm_bt(M, M)
    T3 = (T3[0] + W[0], T3[1] + W[1], T3[2] + W[2], T3[3] + W[3], T3[4] + W[4],
          T3[5] + W[5], T3[6] + W[6], T3[7] + W[7], T3[8] + W[8])
    G = mm_bt(mm(P, T3), P)
    c0 = lam * lam * 0.5
    v00 = c0 * (Vh[0, 0] + Vh[0, 0]) + cross_coef * (T2[0] + T2[0]) + gram_coef * G[0]
    v10 = c0 * (Vh[1, 0] + Vh[0, 1]) + cross_coef * (T2[3] + T2[1]) + gram_coef * G[3]
    v11 = c0 * (Vh[1, 1] + Vh[1, 1]) + cross_coef * (T2[4] + T2[4]) + gram_coef * G[4]
    v20 = c0 * (Vh[2, 0] + Vh[0, 2]) + cross_coef * (T2[6] + T2[2]) + gram_coef * G[6]
    v21 = c0 * (Vh[2, 1] + Vh[1, 2]) + cross_coef * (T2[7] + T2[5]) + gram_coef * G[7]
    v22 = c0 * (Vh[2, 2] + Vh[2, 2]) + cross_coef * (T2[8] + T2[8]) + gram_coef * G[8]
    store((v00, v10, v20, v10, v11, v21, v20, v21, v22), Vh)


@njit(cache=True, inline="always")
def head_sum(Vh_i):
    """``0.0 + V_h`` for one head (``_factors``' sum over heads): a 9-tuple."""
    v = Vh_i[0]
    return (0.0 + v[0, 0], 0.0 + v[0, 1], 0.0 + v[0, 2], 0.0 + v[1, 0], 0.0 + v[1, 1],
            0.0 + v[1, 2], 0.0 + v[2, 0], 0.0 + v[2, 1], 0.0 + v[2, 2])


@njit(cache=True, nogil=True)
def attention_kernel3(rows, bounds, Vh, gamma, tau0, width, key_width, mask, centre, tol,
                      failed, clipped, rec, record):
    """:func:`finite.reduced_kernels.attention_kernel` for m = 3, one head, key width ≥ 3,
    n − 3 ≥ 3, ``record`` False (``rec`` unused): the same draws and bits."""
    lam = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    kappa = lam * gamma / math.sqrt(width)
    mu = gamma * gamma / width
    scale = 1.0 / (tau0 * math.sqrt(width * key_width))
    kw = width - 3
    Vbuf = np.empty((3, 3))
    Lbuf = np.empty((3, 3))
    mk = load(mask)
    ce = load(centre)
    qk_cst = chi_constants(key_width)
    w_cst = chi_constants(kw)
    for k in range(rows.shape[0]):
        hi, lo, ihi, ilo = rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
        for i in range(bounds[k], bounds[k + 1]):
            f, L = factor(head_sum(Vh[i]), Vbuf, Lbuf, tol)
            clipped[i] += 2 if f == 1 else 0
            failed[i] = failed[i] or f == 2
            QK, hi, lo = query_key(key_width, qk_cst, hi, lo, ihi, ilo)
            M, hi, lo = normals9(hi, lo, ihi, ilo)
            W, hi, lo = wishart(kw, w_cst, hi, lo, ihi, ilo)
            A = attention_matrix(L, QK, scale, mk, ce)
            residual_update(Vh[i, 0], mm(A, L), L, M, W, lam, kappa, mu)
        rows[k, 0] = hi
        rows[k, 1] = lo


@njit(cache=True, nogil=True)
def mlp_kernel3(rows, bounds, Vh, residual, gamma, c, width, act, a1, a2, K_given, tol,
                failed, clipped):
    """:func:`finite.reduced_kernels.mlp_kernel` for m = 3, one head, the residual MLP with a
    two-slope ReLU (``act`` = ACT_RELU; ``residual``, ``K_given`` unused), n − 3 ≥ 3: the
    same draws and bits."""
    lam = math.sqrt(max(0.0, 1.0 - gamma * gamma))
    kappa = lam * gamma * math.sqrt(c / width)
    mu = gamma * gamma * c / width
    kw = width - 3
    Vbuf = np.empty((3, 3))
    Lbuf = np.empty((3, 3))
    K = np.empty((3, 3))
    G = np.empty((3, rk.GRAM_CHUNK))
    S = np.empty((3, rk.GRAM_CHUNK))
    acc = np.empty((6, rk.GRAM_CHUNK))
    w_cst = chi_constants(kw)
    for k in range(rows.shape[0]):
        row = rows[k]
        for i in range(bounds[k], bounds[k + 1]):
            f, L = factor(head_sum(Vh[i]), Vbuf, Lbuf, tol)
            store(L, Lbuf)
            rk.hidden_gram_path(row, Lbuf, f == 0, rk.ACT_RELU, a1, a2, width, K, G, S, acc)
            fr, R = factor(load(K), Vbuf, Lbuf, tol)
            clipped[i] += (2 if f == 1 else 0) + (1 if fr == 1 else 0)
            failed[i] = failed[i] or f == 2 or fr == 2
            hi, lo, ihi, ilo = row[0], row[1], row[2], row[3]
            M, hi, lo = normals9(hi, lo, ihi, ilo)
            W, hi, lo = wishart(kw, w_cst, hi, lo, ihi, ilo)
            row[0] = hi
            row[1] = lo
            residual_update(Vh[i, 0], R, L, M, W, lam, kappa, mu)
