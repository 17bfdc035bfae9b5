"""Exact reduced samplers of finite shaped networks (docs/theory.md §5).

Gaussian weights are rotation invariant, so the law of the next layer's covariance given
the current one needs only m-dimensional random matrices. The state of a path is the H
column-block Grams ``V_h = X_{:,h} X_{:,h}ᵀ / n`` (``Σ_h V_h = V``), shape (p, H, m, m)
batched over p paths; with one head (and for the MLP architectures) H = 1 and the state
is V itself. With ``L Lᵀ = V``, ``L_h L_hᵀ = V_h``, λ = sqrt(1 − γ²):

Attention sub-block, head h (``G_Q G_Kᵀ`` drawn as ``M_Q Bᵀ``, B the Bartlett factor of
``Wishart_m(n_k)``, when n_k ≥ m; as a plain product of m × n_k Gaussians otherwise)::

    A_h  = I + softmax_rows(L G_Q G_Kᵀ Lᵀ / (τ0 sqrt(n n_k))) − 11ᵀ/m
    V'_h = λ² V_h + (λγ/sqrt n)(L_h M_hᵀ (A_h L)ᵀ + A_h L M_h L_hᵀ)
           + (γ²/n) A_h L (M_h M_hᵀ + W_h)(A_h L)ᵀ,   W_h ~ Wishart_m(n/H − m)

Residual MLP sub-block: hidden Gram ``K = S Sᵀ/n``, ``S = s(L G)``, G an m × n Gaussian
(O(m² n)), ``R Rᵀ = K``::

    V''_h = λ² V_h + (λγ sqrt(c/n))(R M_h L_hᵀ + L_h M_hᵀ Rᵀ) + (γ² c/n) R (M_h M_hᵀ + W_h) Rᵀ

Li–Nica–Roy layer (no residual): ``V' = c s(L G) s(L G)ᵀ / n``.

Factorisations are PSD-safe (:func:`psd_factor`): Cholesky, and where it fails an
eigen-decomposition with negative eigenvalues clipped to zero (counted); a matrix that is
non-finite or has an eigenvalue below ``-PSD_TOL · max|eigenvalue|`` is a failure, and the
sampler marks that path dead (status 3).

Random numbers: every function that draws takes one RNG block's stream — a
:class:`finite.streams.BlockStream` or a numpy PCG64 ``Generator`` (its state is used and
written back) — and draws from the inlined PCG64 stream (:mod:`finite.inline_rng`) in the
documented order, matrix by matrix: one path's (and head's) matrix is complete before the
next one's. The samplers themselves run the fused kernels of :mod:`finite.reduced_kernels`.
"""
import math

import numpy as np
from numba import njit

from sde.masks import centring_matrix

from . import inline_rng
from . import reduced_kernels as rk
from .shaping import residual_lambda
from .streams import as_stream

#: relative tolerance below which a negative eigenvalue is round-off (clipped), not failure.
PSD_TOL = 1e-8
#: factorisation flags
FACTOR_OK, FACTOR_CLIPPED, FACTOR_FAILED = 0, 1, 2


@njit(cache=True)
def _psd_factor_kernel(V, L, flag, tol):
    for k in range(V.shape[0]):
        flag[k] = rk.factor_into(V[k], L[k], tol)


def psd_factor(V, tol=PSD_TOL):
    """PSD-safe factor of a batch of symmetric matrices.

    V: (..., m, m). Returns ``(L, flag)``: ``L Lᵀ = V`` (Cholesky where it succeeds, else
    ``Q sqrt(max(w, 0))`` from ``eigh``), ``flag`` (...) int8 = :data:`FACTOR_OK`,
    :data:`FACTOR_CLIPPED` (eigenvalues clipped) or :data:`FACTOR_FAILED` (non-finite, or an
    eigenvalue below ``-tol · max|w|``; L is then 0). The choice of factor depends only on
    the matrix itself, never on the rest of the batch.
    """
    V = np.asarray(V, dtype=np.float64)
    shape = V.shape
    m = shape[-1]
    Vf = np.ascontiguousarray(V.reshape(-1, m, m))
    L = np.zeros_like(Vf)
    flag = np.zeros(Vf.shape[0], dtype=np.int8)
    _psd_factor_kernel(Vf, L, flag, float(tol))
    return L.reshape(shape), flag.reshape(shape[:-2])


def _t(A):
    return np.swapaxes(A, -1, -2)


# ---------------------------------------------------------------- random matrices

def _each_matrix(gen, shape, m, cols, fill):
    """Draw ``fill(row, out_matrix)`` for every index of ``shape``, in C order."""
    st = as_stream(gen)
    out = np.empty(tuple(shape) + (m, m))
    flat = out.reshape(-1, m, m)
    work = np.empty((3, m, max(m, cols)))
    fill(st.row, flat, work)
    st.finish()
    return out


@njit(cache=True)
def _fill_bartlett(row, out, work, k):
    for i in range(out.shape[0]):
        inline_rng.bartlett_into(row, k, out[i])


@njit(cache=True)
def _fill_wishart(row, out, work, k):
    for i in range(out.shape[0]):
        inline_rng.wishart_into(row, k, out[i], work[0])


@njit(cache=True)
def _fill_query_key(row, out, work, k):
    for i in range(out.shape[0]):
        inline_rng.query_key_into(row, k, out[i], work)


def bartlett(gen, shape, m, k):
    """Bartlett factors B (shape + (m, m)), lower triangular, ``B Bᵀ ~ Wishart_m(I, k)``.

    Needs k ≥ m: ``B_ii = sqrt(χ²_{k−i})``, ``B_ij ~ N(0, 1)`` for i > j; per matrix, the
    diagonal then the strict lower triangle (:func:`finite.inline_rng.bartlett_into`).
    """
    return _each_matrix(gen, shape, m, m, lambda r, o, w: _fill_bartlett(r, o, w, int(k)))


def wishart(gen, shape, m, k):
    """``Wishart_m(I, k)`` draws (shape + (m, m)): Bartlett for k ≥ m, ``G Gᵀ`` with G an
    m × k Gaussian for 0 < k < m, zeros for k = 0."""
    return _each_matrix(gen, shape, m, k, lambda r, o, w: _fill_wishart(r, o, w, int(k)))


def query_key_product(gen, shape, m, key_width):
    """A draw of ``G_Q G_Kᵀ`` (shape + (m, m)), G_Q, G_K iid m × n_k Gaussians.

    n_k ≥ m: ``M_Q Bᵀ`` with M_Q an m × m Gaussian and B the Bartlett factor of
    ``Wishart_m(n_k)`` (O(m³) whatever n_k); n_k < m: the plain product.
    """
    return _each_matrix(gen, shape, m, key_width,
                        lambda r, o, w: _fill_query_key(r, o, w, int(key_width)))


@njit(cache=True)
def _hidden_gram_kernel(row, L, act, a1, a2, width, K):
    p, m, _ = L.shape
    G = np.empty((m, rk.GRAM_CHUNK))
    S = np.empty((m, rk.GRAM_CHUNK))
    acc = np.empty((m * (m + 1) // 2, rk.GRAM_CHUNK))
    for k in range(p):
        lower = True
        for a in range(m):
            for b in range(a + 1, m):
                if L[k, a, b] != 0.0:
                    lower = False
        rk.hidden_gram_path(row, L[k], lower, act, a1, a2, width, K[k], G, S, acc)


def hidden_gram(gen, L, phi, width, slopes=None):
    """``S Sᵀ / n`` with ``S = phi(L G)``, G (m, n) iid N(0, 1) per path; L (p, m, m).

    The columns of S are iid draws of ``phi(N(0, L Lᵀ))``. Paths in order, each drawing
    G column by column (m normals per column; :func:`finite.reduced_kernels.hidden_gram_path`).
    A two-slope ReLU (``slopes = (s₊, s₋)``, from the activation object's ``slopes(n)``;
    ``phi`` must be that ReLU) runs fused in the kernel; any other ``phi`` is applied in
    numpy to the same normals (drawn into an array first).
    """
    L = np.ascontiguousarray(L, dtype=np.float64)
    p, m, _ = L.shape
    st = as_stream(gen)
    K = np.empty((p, m, m))
    if slopes is not None:
        _hidden_gram_kernel(st.row, L, rk.ACT_RELU, float(slopes[0]), float(slopes[1]),
                            int(width), K)
    else:
        G = np.empty((p, width, m))
        inline_rng.fill_normals(st.row, G.reshape(-1))
        S = phi(L @ _t(G))
        K[:] = S @ _t(S) / width
    st.finish()
    return K


# ---------------------------------------------------------------- layer maps

def _mask_and_centre(mask, m):
    if mask is None:
        return np.ones((m, m)), np.full((m, m), 1.0 / m)
    M = np.asarray(mask, dtype=np.float64)
    return M, centring_matrix(M)


def attention_update(Vh, L, Lh, draws, gamma, tau0, width, key_width, mask=None):
    """One reduced attention layer with its draws given: block Grams Vh (p, H, m, m) → Vh'.

    L (p, m, m) factors ``V = Σ_h V_h``, Lh (p, H, m, m) factors each V_h; draws
    ``(G_Q G_Kᵀ, M, W)``, each (p, H, m, m) (broadcast); ``mask`` the realised 0/1 mask
    (None: complete). The same map as the sampler's kernel
    (:func:`finite.reduced_kernels.attention_kernel`).
    """
    QK, M, W = draws
    p, H, m = Vh.shape[0], Vh.shape[1], Vh.shape[-1]
    shape = (p, H, m, m)
    out = np.array(np.broadcast_to(Vh, shape), dtype=np.float64)
    Mk, C = _mask_and_centre(mask, m)
    args = [np.ascontiguousarray(np.broadcast_to(a, s), dtype=np.float64)
            for a, s in ((L, (p, m, m)), (Lh, shape), (QK, shape), (M, shape), (W, shape))]
    rk.attention_update_given(out, *args, float(gamma),
                              1.0 / (tau0 * math.sqrt(width * key_width)), float(width), Mk, C)
    return out


def mlp_update(Vh, R, Lh, draws, gamma, c, width):
    """One reduced residual MLP layer with its draws given: Vh (p, H, m, m) → Vh''.

    R (p, m, m) factors the hidden Gram K, Lh the blocks of Vh, draws ``(K, M, W)`` (M, W
    (p, H, m, m)); ``c`` the activation's normaliser. The same map as the sampler's kernel.
    """
    _, M, W = draws
    p, H, m = Vh.shape[0], Vh.shape[1], Vh.shape[-1]
    shape = (p, H, m, m)
    out = np.array(np.broadcast_to(Vh, shape), dtype=np.float64)
    args = [np.ascontiguousarray(np.broadcast_to(a, s), dtype=np.float64)
            for a, s in ((R, (p, m, m)), (Lh, shape), (M, shape), (W, shape))]
    lam = residual_lambda(gamma)
    rk.residual_update_given(out, *args, lam, lam * gamma * math.sqrt(c / width),
                             gamma * gamma * c / width)
    return out
