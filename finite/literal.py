"""Literal finite-width shaped networks: explicit Gaussian weight matrices (docs/theory.md §2).

Every function here is batched over paths: a representation is ``X`` of shape
``(p, m, n)`` (p paths, a row per token, width n), and one call applies one layer with
fresh iid N(0, 1) weights to every path.

Random numbers: a layer's weights are drawn from one ``numpy.random.Generator`` in a
fixed order — path by path, and for one path its weight matrices in the order the layer
lists them — as one flat vector of :func:`weight_count` normals per path. The draws of
``p`` paths are therefore the same whether they are made in one call or in several calls
over consecutive sub-chunks (``standard_normal`` fills sequentially), which is what makes
:func:`finite.sample.sample` independent of how paths are chunked in memory.

Layers (λ = sqrt(1 − γ²)):

* attention (§2.1), per head h:
  ``Y_h = (X W^Q_h)(X W^K_h)ᵀ / n``,
  ``A_h = I + softmax_rows(Y_h / (τ0 sqrt(n n_k))) − 11ᵀ/m``,
  ``X' = λ X + γ concat_h(A_h X W^V_h) / sqrt(n)``, ``W^V_h ∈ R^{n×(n/H)}``;
* residual shaped MLP (§2.2): ``X'' = λ X + γ sqrt(c/n) s(X W^pre / sqrt n) W^post``;
* Li–Nica–Roy shaped MLP, no residual (§2.3, §5): ``X' = sqrt(c) s(X W / sqrt n)``.
"""
import math

import numpy as np

from .shaping import residual_lambda, shaped_attention_matrix


def spread_matrix(m, width, heads=1):
    """``E`` (m, n) with orthonormal rows, each token spread evenly over the H head blocks.

    Row i is ``H^{-1/2} e_i`` repeated in every column block of width n/H (docs/theory.md §1, §5),
    so that ``E Eᵀ = I`` and every block satisfies ``E_h E_hᵀ = I / H``. Needs n/H ≥ m.
    """
    bs = width // heads
    if bs * heads != width or bs < m:
        raise ValueError(f"spread_matrix needs heads | width and width/heads >= m, got "
                         f"m={m}, width={width}, heads={heads}")
    E = np.zeros((m, width))
    for h in range(heads):
        E[np.arange(m), h * bs + np.arange(m)] = 1.0 / math.sqrt(heads)
    return E


def initial_X(V0, width, heads=1):
    """``X0 = L E sqrt(n)`` (m, n) with ``L Lᵀ = V0`` (Cholesky), so ``X0 X0ᵀ / n = V0``
    and every head block has Gram ``V0 / H``."""
    L = np.linalg.cholesky(np.asarray(V0, dtype=np.float64))
    return (L @ spread_matrix(L.shape[0], width, heads)) * math.sqrt(width)


def gram(X):
    """``X Xᵀ / n`` for X of shape (p, m, n): (p, m, m)."""
    return X @ np.swapaxes(X, -1, -2) / X.shape[-1]


def block_grams(X, heads):
    """The H column-block Grams ``X_{:,h} X_{:,h}ᵀ / n``: (p, H, m, m)."""
    p, m, n = X.shape
    Xb = X.reshape(p, m, heads, n // heads).transpose(0, 2, 1, 3)
    return Xb @ np.swapaxes(Xb, -1, -2) / n


# ---------------------------------------------------------------- weight bookkeeping

def attention_shapes(width, heads, key_width):
    """Weight shapes of one attention sub-block, in draw order: W^Q, W^K (all heads side by
    side, n × H n_k) and W^V (n × n, head h's W^V_h is column block h)."""
    return [(width, heads * key_width), (width, heads * key_width), (width, width)]


def mlp_shapes(width):
    """Weight shapes of one residual MLP sub-block, in draw order: W^pre, W^post (n × n)."""
    return [(width, width), (width, width)]


def lnr_shapes(width):
    """Weight shape of one Li–Nica–Roy layer: W (n × n)."""
    return [(width, width)]


def weight_count(shapes):
    """Normals per path for the given weight shapes."""
    return sum(a * b for a, b in shapes)


def draw_weights(gen, p, shapes, out=None):
    """Draw the weights of ``p`` paths: a list of C-contiguous arrays (p, a, b), one per shape.

    Path-major: path i's matrices are filled in order before path i + 1's, exactly the
    stream of one flat ``standard_normal((p, weight_count))`` call, so that consecutive
    calls over sub-chunks of paths reproduce one call over all of them. ``out``: optional
    list of preallocated arrays of shapes (≥ p, a, b) to fill (avoids page faults).
    """
    if out is None:
        out = [np.empty((p, a, b)) for a, b in shapes]
    else:
        out = [o[:p] for o in out]
    for i in range(p):
        for o in out:
            gen.standard_normal(out=o[i])
    return out


# ---------------------------------------------------------------- layers

def attention_layer(X, weights, gamma, tau0, heads, key_width, mask=None):
    """One shaped attention residual sub-block (docs/theory.md §2.1) on X (p, m, n).

    ``weights`` = (W^Q, W^K, W^V) as returned by :func:`draw_weights` with
    :func:`attention_shapes`; ``mask`` the realised 0/1 mask matrix (None: complete; masked
    softmax and centring C, docs/theory.md §2.4). Returns X' (p, m, n).
    """
    WQ, WK, WV = weights
    p, m, n = X.shape
    H, nk = heads, key_width
    lam = residual_lambda(gamma)
    Q = (X @ WQ).reshape(p, m, H, nk).transpose(0, 2, 1, 3)      # (p, H, m, nk)
    K = (X @ WK).reshape(p, m, H, nk).transpose(0, 2, 1, 3)
    Y = Q @ np.swapaxes(K, -1, -2) / n                            # (p, H, m, m)
    A = shaped_attention_matrix(Y, tau0, n, nk, mask)
    XV = (X @ WV).reshape(p, m, H, n // H).transpose(0, 2, 1, 3)  # (p, H, m, n/H)
    out = (A @ XV).transpose(0, 2, 1, 3).reshape(p, m, n)         # concat over heads
    return lam * X + (gamma / math.sqrt(n)) * out


def mlp_res_layer(X, weights, gamma, phi, c):
    """One residual shaped-MLP sub-block (docs/theory.md §2.2) on X (p, m, n); hidden width n.

    ``weights`` = (W^pre, W^post); ``phi, c`` from ``model.activation_at(n)``.
    """
    Wpre, Wpost = weights
    n = X.shape[-1]
    lam = residual_lambda(gamma)
    S = phi(X @ Wpre / math.sqrt(n))
    return lam * X + (gamma * math.sqrt(c / n)) * (S @ Wpost)


def lnr_layer(X, weights, phi, c):
    """One Li–Nica–Roy layer without residual (docs/theory.md §2.3, §5): ``sqrt(c) s(X W / sqrt n)``."""
    (W,) = weights
    n = X.shape[-1]
    return math.sqrt(c) * phi(X @ W / math.sqrt(n))
