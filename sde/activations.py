"""Finite-width shaped activations (THEORY §2.2–2.3), used by :mod:`finite`.

Each returns ``(phi, c)``: a vectorised activation at width ``n`` and the normaliser
``c`` such that ``sqrt(c/n) W phi(h)`` keeps unit-diagonal covariance at initialisation.
"""
import numpy as np


def shaped_relu(c_plus, c_minus, width):
    """``s(x) = s₊ max(x,0) + s₋ min(x,0)``, ``s± = 1 + c±/sqrt(n)``, ``c = 2/(s₊² + s₋²)``."""
    sp = 1.0 + c_plus / np.sqrt(width)
    sm = 1.0 + c_minus / np.sqrt(width)

    def phi(x):
        return sp * np.maximum(x, 0.0) + sm * np.minimum(x, 0.0)

    return phi, 2.0 / (sp * sp + sm * sm)


def shaped_tanh(a, width, n_quad=200):
    """``φ_s(x) = s tanh(x/s)``, ``s = a sqrt(n)``; ``c = 1/E[φ_s(g)²]``, g ~ N(0,1).

    The expectation is computed by Gauss–Hermite quadrature (``n_quad`` nodes).
    """
    s = a * np.sqrt(width)

    def phi(x):
        return s * np.tanh(x / s)

    x, w = np.polynomial.hermite_e.hermegauss(n_quad)
    second_moment = np.sum(w * phi(x) ** 2) / np.sqrt(2.0 * np.pi)
    return phi, 1.0 / second_moment
