"""Draws of the reduced samplers from the inlined PCG64 stream (:mod:`sde.pcg64`).

The reduced samplers draw inside numba kernels with numpy's PCG64 step and ziggurat
inlined, the 128-bit state in local variables, instead of calling a ``Generator``. This
module holds their normal draw (:func:`standard_normal`, that is
:func:`sde.pcg64.standard_normal_split`: only the ziggurat's first try inlined) and what they
need beyond it: numpy's exponential ziggurat and Marsaglia–Tsang gamma (numba's port of
``random_standard_exponential`` and ``random_standard_gamma``, same tables, so
:func:`chisquare` equals ``Generator.chisquare`` draw for draw), and the random matrices of
docs/theory.md §5 filled in a fixed order.

State: a ``(blocks, 4)`` uint64 array of rows ``(state_hi, state_lo, inc_hi, inc_lo)``
(:func:`sde.pcg64.states`); a function taking ``row`` draws from and advances that row.
Scalar draws take and return the state: ``x, hi, lo = f(hi, lo, inc_hi, inc_lo)``.

Matrix draw orders (row-major everywhere):

* Bartlett factor of ``Wishart_m(I, k)``, k ≥ m: the diagonal ``sqrt(χ²_{k−i})`` for
  i = 0 … m−1, then the strict lower triangle's normals, row by row;
* ``Wishart_m(I, k)``: Bartlett for k ≥ m; ``G Gᵀ`` from the m × k normals of G for
  0 < k < m; no draw for k = 0;
* ``G_Q G_Kᵀ`` (key width n_k): ``M_Q`` (m × m normals) then the Bartlett factor of
  ``Wishart_m(n_k)`` (``M_Q Bᵀ``, docs/theory.md §5.4) for n_k ≥ m; else G_Q then G_K
  (m × n_k each).
"""
import numpy as np
from numba import njit
from numba.np.random._constants import fe_double, ke_double, we_double, ziggurat_exp_r

from sde import pcg64

_U3, _U8, _BYTE = np.uint64(3), np.uint64(8), np.uint64(0xff)
_KE = ke_double.astype(np.int64)   # all < 2⁵³: an int64 compare


#: One N(0, 1) draw, (x, hi, lo): the first try inlined and the rare rest a call
#: (:func:`sde.pcg64.standard_normal_split`; fewer spills in the samplers' draw loops).
standard_normal = pcg64.standard_normal_split
#: The same draws for a long run from one stream (the hidden Gram's m·n normals), two LCG
#: chains in flight: ``a_hi, a_lo, b_hi, b_lo, c2_hi, c2_lo = paired_start(hi, lo, inc_hi,
#: inc_lo)``, then ``x, a_hi, a_lo, b_hi, b_lo = standard_normal_paired(a_hi, a_lo, b_hi,
#: b_lo, c2_hi, c2_lo, inc_hi, inc_lo)`` per draw, and ``hi, lo = paired_end(a_hi, a_lo,
#: inc_hi, inc_lo)`` (:mod:`sde.pcg64`).
paired_start = pcg64.paired_start
standard_normal_paired = pcg64.standard_normal_paired
paired_end = pcg64.paired_end


@njit(cache=True, inline="always")
def normals3_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo):
    """Three paired draws (a hidden-Gram column at m = 3): ``(x0, x1, x2, a_hi, a_lo, b_hi,
    b_lo)``."""
    x0, a_hi, a_lo, b_hi, b_lo = standard_normal_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                        inc_hi, inc_lo)
    x1, a_hi, a_lo, b_hi, b_lo = standard_normal_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                        inc_hi, inc_lo)
    x2, a_hi, a_lo, b_hi, b_lo = standard_normal_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                        inc_hi, inc_lo)
    return x0, x1, x2, a_hi, a_lo, b_hi, b_lo


@njit(cache=True, inline="always")
def standard_exponential(hi, lo, inc_hi, inc_lo):
    """One Exp(1) draw, numpy's ziggurat (numba's port, same tables): (x, hi, lo)."""
    while True:
        r, hi, lo = pcg64.next_uint64(hi, lo, inc_hi, inc_lo)
        r = r >> _U3
        idx = np.int64(r & _BYTE)
        ri = np.int64(r >> _U8)
        x = np.float64(ri) * we_double[idx]
        if ri < _KE[idx]:
            return x, hi, lo
        u, hi, lo = pcg64.next_double(hi, lo, inc_hi, inc_lo)
        if idx == 0:
            return ziggurat_exp_r - np.log1p(-u), hi, lo
        if (fe_double[idx - 1] - fe_double[idx]) * u + fe_double[idx] < np.exp(-x):
            return x, hi, lo


@njit(cache=True)
def standard_gamma(shape, hi, lo, inc_hi, inc_lo):
    """One Gamma(shape, 1) draw, numpy's algorithm (Marsaglia–Tsang for shape > 1): (x, hi, lo)."""
    if shape == 1.0:
        return standard_exponential(hi, lo, inc_hi, inc_lo)
    if shape == 0.0:
        return 0.0, hi, lo
    if shape < 1.0:
        while True:
            u, hi, lo = pcg64.next_double(hi, lo, inc_hi, inc_lo)
            v, hi, lo = standard_exponential(hi, lo, inc_hi, inc_lo)
            if u <= 1.0 - shape:
                x = u ** (1.0 / shape)
                if x <= v:
                    return x, hi, lo
            else:
                y = -np.log((1.0 - u) / shape)
                x = (1.0 - shape + shape * y) ** (1.0 / shape)
                if x <= v + y:
                    return x, hi, lo
    b, c = gamma_constants(shape)
    return gamma_mt(b, c, hi, lo, inc_hi, inc_lo)


@njit(cache=True, inline="always")
def gamma_constants(shape):
    """Marsaglia–Tsang's ``(b, c) = (shape − 1/3, 1/sqrt(9 b))`` for shape > 1."""
    b = shape - 1.0 / 3.0
    return b, 1.0 / np.sqrt(9.0 * b)


@njit(cache=True)
def gamma_mt(b, c, hi, lo, inc_hi, inc_lo):
    """One Gamma(shape) draw for shape > 1 by Marsaglia–Tsang (numpy's loop), with
    ``(b, c) = gamma_constants(shape)`` computed once by the caller: (x, hi, lo)."""
    while True:
        while True:
            x, hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
            v = 1.0 + c * x
            if v > 0.0:
                break
        v = v * v * v
        u, hi, lo = pcg64.next_double(hi, lo, inc_hi, inc_lo)
        if u < 1.0 - 0.0331 * (x * x) * (x * x):
            return b * v, hi, lo
        if np.log(u) < 0.5 * x * x + b * (1.0 - v + np.log(v)):
            return b * v, hi, lo


@njit(cache=True, inline="always")
def chisquare(df, hi, lo, inc_hi, inc_lo):
    """One χ²_df draw, ``2 · Gamma(df/2)`` as numpy: (x, hi, lo)."""
    g, hi, lo = standard_gamma(df / 2.0, hi, lo, inc_hi, inc_lo)
    return 2.0 * g, hi, lo


@njit(cache=True)
def fill_normals(row, out):
    """Fill the C-contiguous ``out`` (any shape) with N(0, 1) draws in memory order (the
    paired draw: a run from one stream)."""
    inc_hi, inc_lo = row[2], row[3]
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = paired_start(row[0], row[1], inc_hi, inc_lo)
    flat = out.reshape(-1)
    for i in range(flat.shape[0]):
        flat[i], a_hi, a_lo, b_hi, b_lo = standard_normal_paired(a_hi, a_lo, b_hi, b_lo, c_hi,
                                                                 c_lo, inc_hi, inc_lo)
    row[0], row[1] = paired_end(a_hi, a_lo, inc_hi, inc_lo)


@njit(cache=True)
def fill_chisquare(row, df, out):
    """Fill the 1-D ``out`` with χ²_df draws (for tests)."""
    hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
    for i in range(out.shape[0]):
        out[i], hi, lo = chisquare(df, hi, lo, inc_hi, inc_lo)
    row[0] = hi
    row[1] = lo


@njit(cache=True)
def bartlett_into(row, k, B):
    """Bartlett factor of ``Wishart_m(I, k)`` (k ≥ m) into B (m, m), lower triangular."""
    m = B.shape[0]
    hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
    for i in range(m):
        x, hi, lo = chisquare(float(k - i), hi, lo, inc_hi, inc_lo)
        B[i, i] = np.sqrt(x)
    for i in range(m):
        for j in range(i):
            B[i, j], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
        for j in range(i + 1, m):
            B[i, j] = 0.0
    row[0] = hi
    row[1] = lo


@njit(cache=True)
def wishart_into(row, k, W, work):
    """A ``Wishart_m(I, k)`` draw into W (m, m); ``work`` (m, max(m, k)) scratch."""
    m = W.shape[0]
    if k >= m:
        B = work[:, :m]
        bartlett_into(row, k, B)
        for a in range(m):
            for b in range(a + 1):
                acc = 0.0
                for j in range(b + 1):
                    acc += B[a, j] * B[b, j]
                W[a, b] = acc
                W[b, a] = acc
        return
    if k > 0:
        G = work[:, :k]
        hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
        for a in range(m):
            for j in range(k):
                G[a, j], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
        row[0] = hi
        row[1] = lo
        for a in range(m):
            for b in range(a + 1):
                acc = 0.0
                for j in range(k):
                    acc += G[a, j] * G[b, j]
                W[a, b] = acc
                W[b, a] = acc
        return
    W[:, :] = 0.0


@njit(cache=True)
def query_key_into(row, key_width, QK, work):
    """A draw of ``G_Q G_Kᵀ`` (G_Q, G_K iid m × n_k Gaussians) into QK (m, m);
    ``work`` (3, m, max(m, n_k)) scratch."""
    m = QK.shape[0]
    nk = key_width
    hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
    if nk >= m:
        MQ = work[0, :, :m]
        for a in range(m):
            for b in range(m):
                MQ[a, b], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
        row[0] = hi
        row[1] = lo
        B = work[1, :, :m]
        bartlett_into(row, nk, B)
        for a in range(m):
            for b in range(m):
                acc = 0.0
                for j in range(b + 1):
                    acc += MQ[a, j] * B[b, j]
                QK[a, b] = acc
        return
    GQ = work[0, :, :nk]
    GK = work[1, :, :nk]
    for a in range(m):
        for j in range(nk):
            GQ[a, j], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
    for a in range(m):
        for j in range(nk):
            GK[a, j], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
    row[0] = hi
    row[1] = lo
    for a in range(m):
        for b in range(m):
            acc = 0.0
            for j in range(nk):
                acc += GQ[a, j] * GK[b, j]
            QK[a, b] = acc
