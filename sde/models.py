"""One frozen, validated model object per architecture (THEORY §3).

``finite`` and ``compare`` read these objects; the formulas themselves live in
:mod:`sde.coefficients`. Every model exposes

* ``arch`` — ``"attention" | "mlp" | "mlp-res" | "block"``;
* ``coef()`` — the coefficient vector the numba kernels take;
* ``drift(V)`` — b(V), shape (m, m);
* ``diffusion(V)`` — dense Σ(V), shape (m, m, m, m), ``Σ[a,b,c,d] = d⟨V_ab,V_cd⟩/dt``;
* ``a_lin`` and ``attention_noise(m)`` — the constants of the O(m³) noise (§3.3, §4);
* ``noise_matrix(V)`` — the m² × 2m² map from (vec G, vec G') to the noise increment
  (row-major vec), for reference integrators such as sdeint;
* ``params()`` — a flat dict of parameters for dataset attributes.

Conventions: ``V = X Xᵀ / n`` is (m, m); SDE time ``t = layer / n``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from . import coefficients as C
from .activations import shaped_relu, shaped_tanh
from .errors import CovsdeInputError

ACTIVATIONS = ("relu", "tanh")
#: (φ''(0), φ'''(0)) of the smooth activations.
_SMOOTH_DERIVATIVES = {"tanh": (0.0, -2.0)}


def _check_gamma(gamma):
    if not _is_real(gamma) or not (0.0 < gamma <= 1.0):
        raise CovsdeInputError(f"gamma must be in (0, 1], got {gamma!r}")


def _check_tau0(tau0):
    if not _is_real(tau0) or not (tau0 > 0.0) or not math.isfinite(tau0):
        raise CovsdeInputError(f"tau0 must be a finite number > 0, got {tau0!r}")


def _check_heads(heads):
    if isinstance(heads, bool) or not isinstance(heads, numbers.Integral) or heads < 1:
        raise CovsdeInputError(f"heads must be an integer >= 1, got {heads!r}")


def _check_c(name, value):
    if not _is_real(value) or not math.isfinite(value):
        raise CovsdeInputError(f"{name} must be a finite real number, got {value!r}")


def _is_real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


class Model:
    """Shared behaviour; subclasses are frozen dataclasses that define ``coef()``."""

    arch: str = ""

    def coef(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def a_lin(self) -> float:
        """Coefficient of Σ_lin in Σ(V) (THEORY §3.3)."""
        return float(self.coef()[C.ALIN])

    def attention_noise(self, m: int) -> float:
        """Coefficient of Σ_att: γ⁴/(H m² τ0²) with attention, else 0."""
        return float((self.coef()[C.NATT] / m) ** 2)

    def drift(self, V) -> np.ndarray:
        """b(V) for a symmetric (m, m) array V."""
        return C.drift(np.ascontiguousarray(V, dtype=np.float64), self.coef())

    def diffusion(self, V) -> np.ndarray:
        """Dense Σ(V), shape (m, m, m, m)."""
        return C.diffusion_dense(np.ascontiguousarray(V, dtype=np.float64), self.coef())

    def noise_matrix(self, V) -> np.ndarray:
        """The m² × 2m² matrix mapping (vec G, vec G') to the noise increment of THEORY §4.

        ``noise = sqrt(a_lin) L (G + Gᵀ)/sqrt 2 Lᵀ + c L (G' K + K G'ᵀ) Lᵀ`` with
        ``L Lᵀ = V``, ``K = Lᵀ P L``, ``c = NATT/m``; vec is row-major
        (``vec(A X B) = (A ⊗ Bᵀ) vec X``). Built with ``np.kron``.
        """
        V = np.asarray(V, dtype=np.float64)
        m = V.shape[0]
        L = np.linalg.cholesky(V)
        P = np.eye(m) - 1.0 / m
        K = L.T @ P @ L
        # commutation matrix: T vec(X) = vec(Xᵀ)
        T = np.zeros((m * m, m * m))
        idx = np.arange(m * m)
        T[idx, (idx % m) * m + idx // m] = 1.0
        LL = np.kron(L, L)
        g_part = math.sqrt(self.a_lin / 2.0) * (LL + LL @ T)
        c = self.coef()[C.NATT] / m
        gp_part = c * (np.kron(L, L @ K) + np.kron(L @ K, L) @ T)
        return np.hstack([g_part, gp_part])

    def params(self) -> dict:
        """Flat dict of model parameters (netCDF-safe: numbers and strings only)."""
        return {"arch": self.arch, **dataclasses.asdict(self)}

    def replace(self, **changes):
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _mlp_relu_coef(c_plus, c_minus):
    coef = np.zeros(C.N_COEF)
    coef[C.KIND] = C.KIND_RELU
    coef[C.NU] = (c_plus - c_minus) ** 2 / (2.0 * math.pi)
    return coef


@dataclasses.dataclass(frozen=True)
class ShapedAttention(Model):
    """Shaped attention residual sub-block (THEORY §2.1, §3.1)."""

    gamma: float
    tau0: float
    heads: int = 1
    arch = "attention"

    def __post_init__(self):
        _check_gamma(self.gamma)
        _check_tau0(self.tau0)
        _check_heads(self.heads)

    def coef(self):
        g2 = self.gamma ** 2
        coef = np.zeros(C.N_COEF)
        coef[C.ATT] = g2 / self.tau0 ** 2
        coef[C.ALIN] = g2 * (2.0 - g2)
        coef[C.NATT] = g2 / (self.tau0 * math.sqrt(self.heads))
        return coef


@dataclasses.dataclass(frozen=True)
class ShapedMLP(Model):
    """Li–Nica–Roy shaped MLP without residual (THEORY §2.3, §3.2).

    ``activation="relu"``: shaped ReLU with slopes ``1 + c±/sqrt(n)`` (``a`` unused);
    ``activation="tanh"``: smooth shaping ``φ_s(x) = s tanh(x/s)``, ``s = a sqrt(n)``
    (``c±`` unused).
    """

    c_plus: float = 0.0
    c_minus: float = -1.0
    activation: str = "relu"
    a: float = 1.0
    arch = "mlp"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise CovsdeInputError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        _check_c("c_plus", self.c_plus)
        _check_c("c_minus", self.c_minus)
        if not _is_real(self.a) or not (self.a > 0.0) or not math.isfinite(self.a):
            raise CovsdeInputError(f"a must be a finite number > 0, got {self.a!r}")

    def coef(self):
        if self.activation == "relu":
            coef = _mlp_relu_coef(self.c_plus, self.c_minus)
        else:
            f2, f3 = _SMOOTH_DERIVATIVES[self.activation]
            coef = np.zeros(C.N_COEF)
            coef[C.KIND] = C.KIND_SMOOTH
            coef[C.F2] = f2 ** 2 / (4.0 * self.a ** 2)
            coef[C.F3] = f3 / (2.0 * self.a ** 2)
        coef[C.MLP] = 1.0
        coef[C.ALIN] = 1.0
        return coef

    def activation_at(self, width):
        """``(phi, c)`` of the finite network at width ``width``."""
        if self.activation == "relu":
            return shaped_relu(self.c_plus, self.c_minus, width)
        return shaped_tanh(self.a, width)


@dataclasses.dataclass(frozen=True)
class ShapedMLPResidual(Model):
    """Residual shaped-ReLU MLP sub-block, the MLP half of a block (THEORY §2.2, §3.2b)."""

    gamma: float
    c_plus: float = 0.0
    c_minus: float = -1.0
    arch = "mlp-res"

    def __post_init__(self):
        _check_gamma(self.gamma)
        _check_c("c_plus", self.c_plus)
        _check_c("c_minus", self.c_minus)

    def coef(self):
        coef = _mlp_relu_coef(self.c_plus, self.c_minus)
        coef[C.MLP] = self.gamma ** 2
        coef[C.ALIN] = 2.0 * self.gamma ** 2
        return coef

    def activation_at(self, width):
        """``(phi, c)`` of the finite sub-block at width ``width``."""
        return shaped_relu(self.c_plus, self.c_minus, width)


@dataclasses.dataclass(frozen=True)
class ShapedBlock(Model):
    """Shaped Transformer block: attention then residual MLP per layer (THEORY §3.3)."""

    gamma: float
    tau0: float
    c_plus: float = 0.0
    c_minus: float = -1.0
    heads: int = 1
    arch = "block"

    def __post_init__(self):
        _check_gamma(self.gamma)
        _check_tau0(self.tau0)
        _check_heads(self.heads)
        _check_c("c_plus", self.c_plus)
        _check_c("c_minus", self.c_minus)

    def attention(self) -> ShapedAttention:
        """The attention sub-block of this block."""
        return ShapedAttention(self.gamma, self.tau0, self.heads)

    def mlp(self) -> ShapedMLPResidual:
        """The MLP sub-block of this block."""
        return ShapedMLPResidual(self.gamma, self.c_plus, self.c_minus)

    def coef(self):
        coef = self.attention().coef()
        mlp = self.mlp().coef()
        coef[C.MLP] = mlp[C.MLP]
        coef[C.KIND] = mlp[C.KIND]
        coef[C.NU] = mlp[C.NU]
        coef[C.ALIN] += mlp[C.ALIN]
        return coef

    def activation_at(self, width):
        """``(phi, c)`` of the finite MLP sub-block at width ``width``."""
        return self.mlp().activation_at(width)


MODELS = {cls.arch: cls for cls in (ShapedAttention, ShapedMLP, ShapedMLPResidual, ShapedBlock)}


def model_from_params(params: dict) -> Model:
    """Rebuild a model from :meth:`Model.params` (e.g. dataset attributes)."""
    arch = params.get("arch")
    if arch not in MODELS:
        raise CovsdeInputError(f"arch must be one of {', '.join(MODELS)}, got {arch!r}")
    cls = MODELS[arch]
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {k: params[k] for k in names if k in params}
    if "heads" in kwargs:
        kwargs["heads"] = int(kwargs["heads"])
    return cls(**kwargs)
