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

Random numbers: every function that draws takes one ``Generator`` and the paths of one
RNG block, and draws its arrays in a fixed order, so the stream of a block does not depend
on which other blocks are processed alongside it.
"""
import math

import numpy as np
from numba import njit

from sde.coefficients import cholesky_into

from .shaping import residual_lambda, shaped_attention_matrix

#: relative tolerance below which a negative eigenvalue is round-off (clipped), not failure.
PSD_TOL = 1e-8
#: factorisation flags
FACTOR_OK, FACTOR_CLIPPED, FACTOR_FAILED = 0, 1, 2
#: bytes for one hidden-activation chunk (m × n normals per path) in the MLP Gram.
HIDDEN_CHUNK_BYTES = 128 * 2 ** 20


@njit(cache=True)
def _psd_factor_kernel(V, L, flag, tol):
    p, m, _ = V.shape
    for k in range(p):
        finite = True
        for i in range(m):
            for j in range(m):
                if not np.isfinite(V[k, i, j]):
                    finite = False
        if not finite:
            L[k] = 0.0
            flag[k] = 2
            continue
        ok = cholesky_into(V[k], L[k])
        if ok:
            flag[k] = 0
            continue
        # eigen-decomposition with clipping
        A = 0.5 * (V[k] + V[k].T)
        w, Q = np.linalg.eigh(A)
        scale = 0.0
        for i in range(m):
            scale = max(scale, abs(w[i]))
        if w[0] < -tol * scale:
            L[k] = 0.0
            flag[k] = 2
            continue
        for i in range(m):
            r = np.sqrt(max(w[i], 0.0))
            for j in range(m):
                L[k, j, i] = Q[j, i] * r
        flag[k] = 1


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

def bartlett(gen, shape, m, k):
    """Bartlett factors B (shape + (m, m)), lower triangular, ``B Bᵀ ~ Wishart_m(I, k)``.

    Needs k ≥ m: ``B_ii = sqrt(χ²_{k−i})``, ``B_ij ~ N(0, 1)`` for i > j. Draw order:
    the χ² diagonal, then an (m, m) block of normals whose strict lower part is used.
    """
    diag = np.sqrt(gen.chisquare(k - np.arange(m, dtype=np.float64), size=tuple(shape) + (m,)))
    B = np.tril(gen.standard_normal(tuple(shape) + (m, m)), -1)
    idx = np.arange(m)
    B[..., idx, idx] = diag
    return B


def wishart(gen, shape, m, k):
    """``Wishart_m(I, k)`` draws (shape + (m, m)): Bartlett for k ≥ m, ``G Gᵀ`` with G an
    m × k Gaussian for 0 < k < m, zeros for k = 0."""
    if k >= m:
        B = bartlett(gen, shape, m, k)
        return B @ _t(B)
    if k > 0:
        G = gen.standard_normal(tuple(shape) + (m, k))
        return G @ _t(G)
    return np.zeros(tuple(shape) + (m, m))


def query_key_product(gen, shape, m, key_width):
    """A draw of ``G_Q G_Kᵀ`` (shape + (m, m)), G_Q, G_K iid m × n_k Gaussians.

    n_k ≥ m: ``M_Q Bᵀ`` with M_Q an m × m Gaussian and B the Bartlett factor of
    ``Wishart_m(n_k)`` (O(m³) whatever n_k); n_k < m: the plain product.
    """
    if key_width >= m:
        MQ = gen.standard_normal(tuple(shape) + (m, m))
        B = bartlett(gen, shape, m, key_width)
        return MQ @ _t(B)
    GQ = gen.standard_normal(tuple(shape) + (m, key_width))
    GK = gen.standard_normal(tuple(shape) + (m, key_width))
    return GQ @ _t(GK)


def attention_draws(gen, p, m, width, heads, key_width):
    """Random matrices of one reduced attention layer for p paths, in draw order:
    ``(G_Q G_Kᵀ, M, W)``, each (p, H, m, m)."""
    QK = query_key_product(gen, (p, heads), m, key_width)
    M = gen.standard_normal((p, heads, m, m))
    W = wishart(gen, (p, heads), m, width // heads - m)
    return QK, M, W


@njit(cache=True, nogil=True)
def _hidden_gram_relu_kernel(gen, L, s_plus, s_minus, width, K):
    p, m, _ = L.shape
    S = np.empty((m, width))
    for k in range(p):
        G = gen.standard_normal((m, width))
        S[:, :] = 0.0
        for a in range(m):
            for b in range(m):
                lab = L[k, a, b]
                if lab != 0.0:
                    for j in range(width):
                        S[a, j] += lab * G[b, j]
        for a in range(m):
            for j in range(width):
                x = S[a, j]
                S[a, j] = s_plus * x if x > 0.0 else s_minus * x
        for a in range(m):
            for b in range(a + 1):
                acc = 0.0
                for j in range(width):
                    acc += S[a, j] * S[b, j]
                K[k, a, b] = acc / width
                K[k, b, a] = acc / width


def hidden_gram(gen, L, phi, width, chunk_bytes=HIDDEN_CHUNK_BYTES, slopes=None):
    """``S Sᵀ / n`` with ``S = phi(L G)``, G (m, n) iid N(0, 1) per path; L (p, m, m).

    The columns of S are iid draws of ``phi(N(0, L Lᵀ))``. G is drawn path by path in
    order (one ``(m, n)`` block per path), so the result does not depend on how paths are
    chunked. A two-slope ReLU (``slopes = (s₊, s₋)``, from the activation object's
    ``slopes(n)``; ``phi`` must be that ReLU) runs in a numba kernel (one path at a time,
    same stream); any other activation (``slopes=None``) in numpy over sub-chunks of at most
    ``chunk_bytes`` of normals.
    """
    p, m, _ = L.shape
    K = np.empty((p, m, m))
    if slopes is not None:
        _hidden_gram_relu_kernel(gen, np.ascontiguousarray(L), slopes[0], slopes[1],
                                 int(width), K)
        return K
    q = max(1, int(chunk_bytes // (8 * m * width)))
    for i0 in range(0, p, q):
        i1 = min(p, i0 + q)
        S = phi(L[i0:i1] @ gen.standard_normal((i1 - i0, m, width)))
        K[i0:i1] = S @ _t(S) / width
    return K


def mlp_draws(gen, L, phi, width, heads, slopes=None):
    """Random parts of one reduced residual MLP layer for the p paths of L (p, m, m), in
    draw order: the hidden Gram (without c), then ``M`` and ``W`` (p, H, m, m)."""
    p, m, _ = L.shape
    K = hidden_gram(gen, L, phi, width, slopes=slopes)
    M = gen.standard_normal((p, heads, m, m))
    W = wishart(gen, (p, heads), m, width // heads - m)
    return K, M, W


# ---------------------------------------------------------------- layer maps

def attention_update(Vh, L, Lh, draws, gamma, tau0, width, key_width, mask=None):
    """One reduced attention layer: block Grams Vh (p, H, m, m) → Vh'.

    L (p, m, m) factors ``V = Σ_h V_h``, Lh (p, H, m, m) factors each V_h; draws from
    :func:`attention_draws`; ``mask`` the realised 0/1 mask (None: complete). A mask changes
    only how A is computed from the logits (docs/theory.md §5.8).
    """
    QK, M, W = draws
    lam = residual_lambda(gamma)
    Lx = L[:, None]
    Y = Lx @ QK @ _t(Lx)
    A = shaped_attention_matrix(Y, tau0, width, key_width, mask)
    AL = A @ Lx
    cross = AL @ M @ _t(Lh)
    return (lam * lam * Vh + (lam * gamma / math.sqrt(width)) * (cross + _t(cross))
            + (gamma * gamma / width) * (AL @ (M @ _t(M) + W) @ _t(AL)))


def mlp_update(Vh, R, Lh, draws, gamma, c, width):
    """One reduced residual MLP layer: Vh (p, H, m, m) → Vh''.

    R (p, m, m) factors the hidden Gram K of ``draws`` (from :func:`mlp_draws`), Lh the
    blocks of Vh; ``c`` the activation's normaliser.
    """
    _, M, W = draws
    lam = residual_lambda(gamma)
    Rx = R[:, None]
    cross = Rx @ M @ _t(Lh)
    return (lam * lam * Vh + (lam * gamma * math.sqrt(c / width)) * (cross + _t(cross))
            + (gamma * gamma * c / width) * (Rx @ (M @ _t(M) + W) @ _t(Rx)))
