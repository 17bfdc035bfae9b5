"""The shaping formulas shared by the literal and the reduced samplers (docs/theory.md §2.1–2.2, masks §2.4).

Batched over leading axes; the last two axes are (m, m) token matrices.
"""
import math

import numpy as np

from sde.masks import centring_matrix


def residual_lambda(gamma):
    """λ = sqrt(1 − γ²), the weight of the skip branch (λ² + γ² = 1)."""
    return math.sqrt(max(0.0, 1.0 - gamma * gamma))


def softmax_rows(Y):
    """Row-wise softmax over the last axis (max-subtracted)."""
    Z = np.exp(Y - Y.max(axis=-1, keepdims=True))
    return Z / Z.sum(axis=-1, keepdims=True)


def masked_softmax_rows(Y, M):
    """Row-wise softmax over the allowed keys of the 0/1 mask M (m, m): ``exp(Y_ab)`` over
    ``Σ_{b: M_ab = 1} exp(Y_ab)`` where ``M_ab = 1``, 0 elsewhere (max-subtracted over the
    allowed keys; M has a unit diagonal, so every row has one)."""
    allowed = np.asarray(M) != 0
    Ym = np.where(allowed, Y, -np.inf)
    Z = np.exp(Ym - Ym.max(axis=-1, keepdims=True))
    return Z / Z.sum(axis=-1, keepdims=True)


def shaped_attention_matrix(Y, tau0, width, key_width, mask=None):
    """``A = I + softmax_rows(Y / (τ0 sqrt(n n_k))) − 11ᵀ/m`` for logits ``Y = (XW^Q)(XW^K)ᵀ/n``.

    ``mask`` (m, m) 0/1 with unit diagonal (docs/theory.md §2.4): the softmax runs over the
    allowed keys and the centring is ``C_ab = M_ab / k_a``, ``A = I + softmax_M(·) − C``.
    ``None`` (the complete mask) is the unmasked computation, unchanged.
    """
    m = Y.shape[-1]
    if mask is None:
        A = softmax_rows(Y / (tau0 * math.sqrt(width * key_width)))
        A += np.eye(m) - 1.0 / m
        return A
    A = masked_softmax_rows(Y / (tau0 * math.sqrt(width * key_width)), mask)
    A += np.eye(m) - centring_matrix(mask)
    return A
