"""Shaped activations (docs/theory.md §2.2–2.3, §3.2): one object per activation.

Each activation gives, from one definition,

* ``at_width(n)`` → ``(phi, c)``: the finite activation at width n (vectorised) and the
  normaliser ``c`` such that ``sqrt(c/n) W phi(h)`` keeps a unit-diagonal covariance;
* ``slopes(n)`` → ``(s₊, s₋)`` for a two-slope ReLU (used by the reduced sampler's numba
  kernel), ``None`` for a smooth activation;
* ``limit(scale)`` → the :class:`sde.limits.LimitCoefficients` of its drift, multiplied by
  ``scale`` (1 for the Li–Nica–Roy MLP, γ² in a residual branch).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .limits import LimitCoefficients
from .validation import check_finite_real, check_positive_finite


@dataclasses.dataclass(frozen=True)
class ShapedReLU:
    """``s(x) = s₊ max(x,0) + s₋ min(x,0)``, ``s± = 1 + c±/sqrt(n)``, ``c = 2/(s₊² + s₋²)``."""

    c_plus: float = 0.0
    c_minus: float = -1.0
    name = "relu"

    def __post_init__(self):
        check_finite_real("c_plus", self.c_plus)
        check_finite_real("c_minus", self.c_minus)

    def slopes(self, width):
        """``(s₊, s₋)`` at width n."""
        return 1.0 + self.c_plus / np.sqrt(width), 1.0 + self.c_minus / np.sqrt(width)

    def at_width(self, width):
        sp, sm = self.slopes(width)

        def phi(x):
            return sp * np.maximum(x, 0.0) + sm * np.minimum(x, 0.0)

        return phi, 2.0 / (sp * sp + sm * sm)

    def limit(self, scale):
        """ν-drift: ``b_ab = scale · ν(ρ_ab) sqrt(V_aa V_bb)``, ν's prefactor (c₊ − c₋)²/(2π)."""
        return LimitCoefficients(mlp_drift=scale, smooth=False,
                                 nu=(self.c_plus - self.c_minus) ** 2 / (2.0 * math.pi))


@dataclasses.dataclass(frozen=True)
class ShapedTanh:
    """``φ_s(x) = s tanh(x/s)``, ``s = a sqrt(n)``; ``c = 1/E[φ_s(g)²]``, g ~ N(0, 1).

    φ''(0) = 0 and φ'''(0) = −2 enter the smooth-shaping drift (§3.2).
    """

    a: float = 1.0
    name = "tanh"
    #: (φ''(0), φ'''(0))
    derivatives = (0.0, -2.0)
    #: Gauss–Hermite nodes for E[φ_s(g)²]
    n_quad = 200

    def __post_init__(self):
        check_positive_finite("a", self.a)

    def slopes(self, width):
        return None

    def at_width(self, width):
        s = self.a * np.sqrt(width)

        def phi(x):
            return s * np.tanh(x / s)

        x, w = np.polynomial.hermite_e.hermegauss(self.n_quad)
        second_moment = np.sum(w * phi(x) ** 2) / np.sqrt(2.0 * np.pi)
        return phi, 1.0 / second_moment

    def limit(self, scale):
        f2, f3 = self.derivatives
        return LimitCoefficients(mlp_drift=scale, smooth=True,
                                 f2=f2 ** 2 / (4.0 * self.a ** 2), f3=f3 / (2.0 * self.a ** 2))


ACTIVATIONS = {cls.name: cls for cls in (ShapedReLU, ShapedTanh)}
