"""Reference: the reduced samplers as they drew through numpy's ``Generator`` (tests only).

A self-contained copy of the earlier reduced sampler of the shaped layers (attention with or
without a mask, residual MLP, Li–Nica–Roy MLP and their compositions), kept so that the law
of the package's sampler — which draws from the inlined PCG64 stream in another order — can
be compared with it (tests/test_finite_floor.py). The maths is that of docs/theory.md §5;
the draws use ``Generator`` array calls, array by array over the paths of a block:

* attention, per layer: ``G_Q G_Kᵀ`` (``M_Q Bᵀ`` with a Bartlett factor B: the χ² diagonal
  of every path then the normals), then M (p, H, m, m), then the Wishart W;
* MLP: the hidden Gram path by path (one (m, n) block of normals each, row-major), then M,
  then W.

Only the final V is returned (no dead-path bookkeeping: the tests use parameters where no
path dies, and assert it).
"""
import math

import numpy as np

from finite.reduced import psd_factor
from sde.masks import centring_matrix
from sde.models import ShapedAttention, ShapedMLP, ShapedMLPResidual
from sde.runs import block_generators


def _t(A):
    return np.swapaxes(A, -1, -2)


def bartlett(gen, shape, m, k):
    diag = np.sqrt(gen.chisquare(k - np.arange(m, dtype=np.float64), size=tuple(shape) + (m,)))
    B = np.tril(gen.standard_normal(tuple(shape) + (m, m)), -1)
    idx = np.arange(m)
    B[..., idx, idx] = diag
    return B


def wishart(gen, shape, m, k):
    if k >= m:
        B = bartlett(gen, shape, m, k)
        return B @ _t(B)
    if k > 0:
        G = gen.standard_normal(tuple(shape) + (m, k))
        return G @ _t(G)
    return np.zeros(tuple(shape) + (m, m))


def query_key_product(gen, shape, m, key_width):
    if key_width >= m:
        MQ = gen.standard_normal(tuple(shape) + (m, m))
        B = bartlett(gen, shape, m, key_width)
        return MQ @ _t(B)
    GQ = gen.standard_normal(tuple(shape) + (m, key_width))
    GK = gen.standard_normal(tuple(shape) + (m, key_width))
    return GQ @ _t(GK)


def hidden_gram(gen, L, phi, width):
    p, m, _ = L.shape
    K = np.empty((p, m, m))
    for k in range(p):
        S = phi(L[k] @ gen.standard_normal((m, width)))
        K[k] = S @ S.T / width
    return K


def _attention_matrix(Y, tau0, width, key_width, mask):
    Y = Y / (tau0 * math.sqrt(width * key_width))
    m = Y.shape[-1]
    if mask is not None:
        Y = np.where(mask != 0, Y, -np.inf)
    Z = np.exp(Y - Y.max(axis=-1, keepdims=True))
    A = Z / Z.sum(axis=-1, keepdims=True)
    C = np.full((m, m), 1.0 / m) if mask is None else centring_matrix(mask)
    return A + np.eye(m) - C


def attention_layer(gen, Vh, spec, width, key_width, mask):
    p, H, m, _ = Vh.shape
    L, _ = psd_factor(Vh.sum(axis=1))
    Lh, _ = psd_factor(Vh)
    QK = query_key_product(gen, (p, H), m, key_width)
    M = gen.standard_normal((p, H, m, m))
    W = wishart(gen, (p, H), m, width // H - m)
    g, lam = spec.gamma, math.sqrt(max(0.0, 1.0 - spec.gamma ** 2))
    Lx = L[:, None]
    A = _attention_matrix(Lx @ QK @ _t(Lx), spec.tau0, width, key_width, mask)
    AL = A @ Lx
    cross = AL @ M @ _t(Lh)
    return (lam * lam * Vh + (lam * g / math.sqrt(width)) * (cross + _t(cross))
            + (g * g / width) * (AL @ (M @ _t(M) + W) @ _t(AL)))


def mlp_res_layer(gen, Vh, spec, width):
    p, H, m, _ = Vh.shape
    phi, c = spec.shaped_activation.at_width(width)
    L, _ = psd_factor(Vh.sum(axis=1))
    Lh, _ = psd_factor(Vh)
    K = hidden_gram(gen, L, phi, width)
    M = gen.standard_normal((p, H, m, m))
    W = wishart(gen, (p, H), m, width // H - m)
    R, _ = psd_factor(K)
    g, lam = spec.gamma, math.sqrt(max(0.0, 1.0 - spec.gamma ** 2))
    Rx = R[:, None]
    cross = Rx @ M @ _t(Lh)
    return (lam * lam * Vh + (lam * g * math.sqrt(c / width)) * (cross + _t(cross))
            + (g * g * c / width) * (Rx @ (M @ _t(M) + W) @ _t(Rx)))


def lnr_layer(gen, Vh, spec, width):
    phi, c = spec.shaped_activation.at_width(width)
    L, _ = psd_factor(Vh[:, 0])
    return (c * hidden_gram(gen, L, phi, width))[:, None]


def sample_final_V(model, V0, *, width, depth, n_paths, seed, key_width=None):
    """V after ``depth`` layers, (n_paths, m, m), drawn block by block with the old streams
    (blocks of :data:`sde.runs.RNG_BLOCK` paths, one spawned Generator each)."""
    m = V0.shape[0]
    H = model.heads
    nk = width // H if key_width is None else key_width
    subs = list(model.sublayers())
    masks = {}
    for s in subs:
        if isinstance(s, ShapedAttention):
            Mk = s.mask_spec.matrix(m, seed)
            masks[id(s)] = None if np.all(Mk == 1) else Mk
    out = []
    for gen in block_generators(seed, n_paths):
        q = min(256, n_paths - 256 * len(out))
        Vh = np.broadcast_to(V0 / H, (q, H, m, m)).copy()
        for _ in range(depth):
            for s in subs:
                if isinstance(s, ShapedAttention):
                    Vh = attention_layer(gen, Vh, s, width, nk, masks[id(s)])
                elif isinstance(s, ShapedMLP):
                    Vh = lnr_layer(gen, Vh, s, width)
                elif isinstance(s, ShapedMLPResidual):
                    Vh = mlp_res_layer(gen, Vh, s, width)
                else:
                    raise TypeError(type(s).__name__)
        out.append(Vh.sum(axis=1))
    return np.concatenate(out)
