"""The shaping formulas shared by the literal and the reduced samplers (docs/theory.md §2.1–2.2).

Batched over leading axes; the last two axes are (m, m) token matrices.
"""
import math

import numpy as np


def residual_lambda(gamma):
    """λ = sqrt(1 − γ²), the weight of the skip branch (λ² + γ² = 1)."""
    return math.sqrt(max(0.0, 1.0 - gamma * gamma))


def softmax_rows(Y):
    """Row-wise softmax over the last axis (max-subtracted)."""
    Z = np.exp(Y - Y.max(axis=-1, keepdims=True))
    return Z / Z.sum(axis=-1, keepdims=True)


def shaped_attention_matrix(Y, tau0, width, key_width):
    """``A = I + softmax_rows(Y / (τ0 sqrt(n n_k))) − 11ᵀ/m`` for logits ``Y = (XW^Q)(XW^K)ᵀ/n``."""
    m = Y.shape[-1]
    A = softmax_rows(Y / (tau0 * math.sqrt(width * key_width)))
    A += np.eye(m) - 1.0 / m
    return A
