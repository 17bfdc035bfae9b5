"""The model objects: one frozen, validated class per sub-layer, and serial compositions.

A *sub-layer* (:class:`ShapedAttention`, :class:`ShapedMLPResidual`, :class:`ShapedMLP`) is
the unit of definition (docs/theory.md §2–3). It owns its validated parameters and its limit
coefficients (:meth:`Model.limit`, a :class:`sde.limits.LimitCoefficients` the numba kernels
read by name). Its finite maps (literal weights and the exact reduced sampler) are registered
for its type in :mod:`finite.layers`, so that ``sde`` never imports ``finite``.

A *composition* (:class:`Serial`, and :class:`ShapedBlock` = attention then residual MLP)
lists its sub-layers; its limit coefficients are derived from theirs
(:func:`sde.limits.compose`: at leading order in 1/n the generators of sub-layers applied in
series add, §9), never merged by hand.

Every model exposes

* ``arch`` — the name stored in dataset attributes (``model_from_params`` reads it back);
* ``sublayers()`` — the primitive sub-layers applied, in order, in one layer;
* ``limit()`` — the limit coefficients; ``drift(V)``, ``diffusion(V)`` (dense m⁴ Σ),
  ``noise_matrix(V)`` (m² × 2m², for reference integrators such as sdeint);
* ``heads`` — H, the number of column blocks of the finite network's state;
* ``params()`` — a flat dict of parameters for dataset attributes;
* ``parameters()`` — (name, default) of the constructor's parameters; each is a dataclass
  field made by :func:`sde.parameters.parameter` that carries its help and range, from which
  the CLI derives its flags (``--`` + name with ``_`` → ``-``).

Conventions: ``V = X Xᵀ / n`` is (m, m); SDE time ``t = layer / n``.

Length: the module holds every shaped sub-layer, the compositions and the mask fields they
share, because a composition's rules (limits composed, masks shared, parameters forwarded)
are read against the sub-layers they combine.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math

import numpy as np

from .activations import ACTIVATIONS, ShapedReLU, ShapedTanh
from .errors import CovsdeInputError
from .limits import LimitCoefficients, compose, typed
from .masks import Mask, model_mask
from .parameters import REQUIRED, parameter, shared
from .registry import ModelRegistry
from .validation import check_finite_real, check_gamma, check_positive_int, check_tau0

class Model:
    """Shared behaviour of sub-layers and compositions (frozen dataclasses)."""

    arch: str = ""
    #: one line for ``--help``
    summary: str = ""
    #: whether the model has a covariance SDE (False: finite networks only, docs/theory.md §2.4)
    has_limit = True

    def limit(self) -> LimitCoefficients:
        """The limit coefficients of the SDE (§3), typed for the numba kernels."""
        return typed(self._limit())

    def _limit(self) -> LimitCoefficients:  # pragma: no cover - abstract
        raise NotImplementedError

    def sublayers(self) -> tuple:
        """The primitive sub-layers of one layer, in order (a sub-layer: itself)."""
        return (self,)

    @property
    def heads(self) -> int:
        """H, the column blocks of the finite state (1 unless a sub-layer has heads)."""
        return 1

    @property
    def a_lin(self) -> float:
        """Coefficient of Σ_lin in Σ(V) (§3.3)."""
        return float(self.limit().a_lin)

    def attention_noise(self, m: int) -> float:
        """Coefficient of Σ_att: γ⁴/(H m² τ0²) with attention, else 0."""
        return float((self.limit().att_noise / m) ** 2)

    @property
    def attention_mask(self):
        """The :class:`sde.masks.Mask` shared by the attention sub-layers (None without)."""
        return model_mask(self)

    def _mask_matrix(self, m, seed):
        """The model's realised mask M at m tokens, or None when it is complete."""
        mask = self.attention_mask
        if mask is None or mask.is_complete:
            return None
        M = mask.matrix(m, seed)
        return None if np.all(M == 1) else M

    def drift(self, V, seed=None) -> np.ndarray:
        """b(V) for a symmetric (m, m) array V (``seed``: the run's, for a sparse mask)."""
        V = _as_matrix(V)
        M = self._mask_matrix(V.shape[0], seed)
        if M is None:
            from . import coefficients as C

            return C.drift(V, self.limit())
        from . import masked_coefficients as masked
        return masked.drift(V, self.limit(), M)

    def diffusion(self, V, seed=None) -> np.ndarray:
        """Dense Σ(V), shape (m, m, m, m): ``Σ[a,b,c,d] = d⟨V_ab, V_cd⟩/dt``.

        With a mask: ``Σ = N Nᵀ`` from :meth:`noise_matrix` (docs/theory.md §3.5).
        """
        V = _as_matrix(V)
        m = V.shape[0]
        if self._mask_matrix(m, seed) is None:
            from . import coefficients as C

            return C.diffusion_dense(V, self.limit())
        N = self.noise_matrix(V, seed)
        return (N @ N.T).reshape(m, m, m, m)

    def noise_matrix(self, V, seed=None) -> np.ndarray:
        """The m² × 2m² matrix mapping (vec G, vec G') to the noise increment (§4).

        ``noise = sqrt(a_lin) L (G + Gᵀ)/sqrt 2 Lᵀ + c L (G' K + K G'ᵀ) Lᵀ`` with
        ``L Lᵀ = V``, ``K = Lᵀ P L``, ``c = att_noise/m``; vec is row-major
        (``vec(A X B) = (A ⊗ Bᵀ) vec X``). Built with ``np.kron``. With a mask the G' part
        is ``att_noise (ΔV + VΔᵀ)``, ``Δ = C∘(Ẑ − z̄1ᵀ)``, ``Ẑ = L G' Lᵀ`` (§3.5).
        """
        V = _as_matrix(V)
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
        M = self._mask_matrix(m, seed)
        if M is None:
            c = self.limit().att_noise / m
            gp_part = c * (np.kron(L, L @ K) + np.kron(L @ K, L) @ T)
        else:
            from . import masked_coefficients as masked
            gp_part = self.limit().att_noise * masked.noise_map(V, M)
        return np.hstack([g_part, gp_part])

    def params(self) -> dict:
        """Flat dict of model parameters (netCDF-safe: numbers and strings only)."""
        return {"arch": self.arch, **dataclasses.asdict(self)}

    @classmethod
    def parameters(cls):
        """``[(name, default)]`` of the constructor (default :data:`REQUIRED` if none)."""
        return [(f.name, REQUIRED if f.default is dataclasses.MISSING else f.default)
                for f in dataclasses.fields(cls)]

    @classmethod
    def check_given(cls, given, show=str):
        """Refuse combinations of explicitly ``given`` parameters (a dict) that do not apply.

        ``show`` renders a parameter name in the message (the CLI passes its flag mapping).
        """

    def replace(self, **changes):
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _as_matrix(V):
    """V as a contiguous float64 (m, m) array, else a one-line error naming V."""
    try:
        V = np.ascontiguousarray(V, dtype=np.float64)
    except (TypeError, ValueError):
        raise CovsdeInputError(f"V must be a numeric (m, m) array, got {type(V).__name__}",
                               "V") from None
    if V.ndim != 2 or V.shape[0] != V.shape[1] or V.shape[0] < 1:
        raise CovsdeInputError(f"V must be a square (m, m) array, got shape {V.shape}", "V")
    return V


# ---------------------------------------------------------------- sub-layers

@dataclasses.dataclass(frozen=True)
class ShapedAttention(Model):
    """Shaped attention residual sub-block (§2.1, §3.1)."""

    gamma: float = shared("gamma")
    tau0: float = shared("tau0")
    heads: int = shared("heads", 1)
    #: a name of :data:`sde.masks.MASKS`, or (Python only) a 0/1 matrix with unit diagonal
    mask: str = shared("mask", "complete")
    window: int = shared("window", 0)
    sparse_k: int = shared("sparse_k", 0)
    arch = "attention"
    summary = "shaped attention sub-block"

    def __post_init__(self):
        check_gamma(self.gamma)
        check_tau0(self.tau0)
        check_positive_int("heads", self.heads)
        normalise_mask(self)

    @property
    def mask_spec(self) -> Mask:
        """The attention mask (docs/theory.md §2.4, §3.5)."""
        return mask_of(self)

    def params(self):
        return mask_params(self, Model.params(self))

    @classmethod
    def check_given(cls, given, show=str):
        check_mask_given(given, show)

    def _limit(self):
        g2 = self.gamma ** 2
        return LimitCoefficients(att_drift=g2 / self.tau0 ** 2, a_lin=g2 * (2.0 - g2),
                                 att_noise=g2 / (self.tau0 * math.sqrt(self.heads)))


@dataclasses.dataclass(frozen=True)
class ShapedMLPResidual(Model):
    """Residual shaped-ReLU MLP sub-block, the MLP half of a block (§2.2, §3.2b)."""

    gamma: float = shared("gamma")
    c_plus: float = shared("c_plus", 0.0)
    c_minus: float = shared("c_minus", -1.0)
    arch = "mlp-res"
    summary = "residual shaped-ReLU MLP sub-block"

    def __post_init__(self):
        check_gamma(self.gamma)
        self.shaped_activation  # validates c±

    @property
    def shaped_activation(self):
        return ShapedReLU(self.c_plus, self.c_minus)

    def activation_at(self, width):
        """``(phi, c)`` of the finite sub-block at width ``width``."""
        return self.shaped_activation.at_width(width)

    def _limit(self):
        g2 = self.gamma ** 2
        return self.shaped_activation.limit(g2)._replace(a_lin=2.0 * g2)


@dataclasses.dataclass(frozen=True)
class ShapedMLP(Model):
    """Li–Nica–Roy shaped MLP without residual (§2.3, §3.2).

    ``activation="relu"``: shaped ReLU with slopes ``1 + c±/sqrt(n)`` (``a`` unused);
    ``activation="tanh"``: smooth shaping ``φ_s(x) = s tanh(x/s)``, ``s = a sqrt(n)``
    (``c±`` unused).
    """

    c_plus: float = shared("c_plus", 0.0)
    c_minus: float = shared("c_minus", -1.0)
    activation: str = parameter("relu", help="relu (shaped ReLU) or tanh (smooth shaping "
                                "s·tanh(x/s), s = a sqrt(n))", range="relu or tanh")
    a: float = parameter(1.0, help="smooth-shaping scale a (with activation tanh)", range="> 0")
    arch = "mlp"
    summary = "Li–Nica–Roy shaped MLP (no residual)"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise CovsdeInputError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}",
                "activation")
        check_finite_real("c_plus", self.c_plus)
        check_finite_real("c_minus", self.c_minus)
        ShapedTanh(self.a)  # validates a

    @property
    def shaped_activation(self):
        if self.activation == "relu":
            return ShapedReLU(self.c_plus, self.c_minus)
        return ShapedTanh(self.a)

    def activation_at(self, width):
        """``(phi, c)`` of the finite network at width ``width``."""
        return self.shaped_activation.at_width(width)

    def _limit(self):
        return self.shaped_activation.limit(1.0)._replace(a_lin=1.0)

    @classmethod
    def check_given(cls, given, show=str):
        act = given.get("activation") or "relu"
        if act == "tanh" and {"c_plus", "c_minus"} & set(given):
            raise CovsdeInputError(f"{show('c_plus')}/{show('c_minus')} do not apply to "
                                   f"{show('activation')} tanh")
        if act == "relu" and "a" in given:
            raise CovsdeInputError(f"{show('a')} applies only to {show('activation')} tanh")


# ---------------------------------------------------------------- compositions

class Serial(Model):
    """Sub-layers applied in series within one layer; limit coefficients by composition.

    ``Serial(ShapedAttention(0.5, 1.0), ShapedMLPResidual(0.5))`` has the limit of
    :class:`ShapedBlock` (§3.3, §9). All sub-layers with heads must agree on H.
    """

    arch = "serial"
    summary = "serial composition of sub-layers"

    def __init__(self, *layers):
        if not layers or not all(isinstance(s, Model) for s in layers):
            raise CovsdeInputError("Serial takes one or more covsde model objects")
        object.__setattr__(self, "_layers",
                           tuple(s for layer in layers for s in layer.sublayers()))
        self.heads  # validates the head counts
        model_mask(self)  # attention sub-layers must share one mask (§3.5)

    def sublayers(self):
        return self._layers

    @property
    def heads(self):
        hs = {s.heads for s in self.sublayers() if s.heads != 1}
        if len(hs) > 1:
            raise CovsdeInputError(f"sub-layers of a composition must agree on heads, got "
                                   f"{sorted(hs)}")
        return hs.pop() if hs else 1

    def _limit(self):
        return functools.reduce(compose, (s.limit() for s in self.sublayers()))

    def params(self):
        return {"arch": self.arch,
                "layers": repr([s.params() for s in self.sublayers()])}

    def __getattr__(self, name):
        """A parameter shared by the sub-layers that have it (e.g. ``tau0``)."""
        if name.startswith("_"):
            raise AttributeError(name)
        values = {getattr(s, name) for s in self.sublayers()
                  if name in {f.name for f in dataclasses.fields(s)}}
        if len(values) != 1:
            raise AttributeError(f"Serial has no single parameter {name!r} "
                                 f"(values in its sub-layers: {sorted(values)})")
        return values.pop()

    def replace(self, **changes):
        """A copy whose sub-layers that have a changed parameter take its new value."""
        unknown = set(changes) - {f.name for s in self.sublayers()
                                  for f in dataclasses.fields(s)}
        if unknown:
            raise CovsdeInputError(f"no sub-layer of this composition has {sorted(unknown)}")
        return Serial(*(s.replace(**{k: v for k, v in changes.items()
                                     if k in {f.name for f in dataclasses.fields(s)}})
                        for s in self.sublayers()))

    def __eq__(self, other):
        return type(other) is type(self) and other.sublayers() == self.sublayers()

    def __hash__(self):
        return hash(self.sublayers())

    def __repr__(self):
        return f"Serial{self.sublayers()!r}"


@dataclasses.dataclass(frozen=True, eq=True)
class ShapedBlock(Serial):
    """Shaped Transformer block: attention then residual MLP per layer (§3.3)."""

    gamma: float = shared("gamma")
    tau0: float = shared("tau0")
    c_plus: float = shared("c_plus", 0.0)
    c_minus: float = shared("c_minus", -1.0)
    heads: int = shared("heads", 1)
    mask: str = shared("mask", "complete")
    window: int = shared("window", 0)
    sparse_k: int = shared("sparse_k", 0)
    arch = "block"
    summary = "shaped attention then residual MLP per layer"

    def __post_init__(self):
        normalise_mask(self)
        Serial.__init__(self, self.attention(), self.mlp())

    def attention(self) -> ShapedAttention:
        """The attention sub-block of this block."""
        return ShapedAttention(self.gamma, self.tau0, self.heads, self.mask, self.window,
                               self.sparse_k)

    @property
    def mask_spec(self) -> Mask:
        return mask_of(self)

    @classmethod
    def check_given(cls, given, show=str):
        check_mask_given(given, show)

    def mlp(self) -> ShapedMLPResidual:
        """The MLP sub-block of this block."""
        return ShapedMLPResidual(self.gamma, self.c_plus, self.c_minus)

    def params(self):
        return mask_params(self, Model.params(self))

    replace = Model.replace


# ---------------------------------------------------------------- masks (§2.4, §3.5)

def normalise_mask(obj):
    """Validate the mask fields; a matrix (or a Mask) given as ``mask`` is stored as a tuple
    of 0/1 tuples, so that the model stays hashable and comparable."""
    mask = obj.mask
    if isinstance(mask, Mask):
        spec = mask
    elif isinstance(mask, str):
        spec = Mask(mask, obj.window, obj.sparse_k)
    else:
        spec = Mask.from_matrix(mask)
        if obj.window or obj.sparse_k:
            raise CovsdeInputError("window and sparse_k do not apply to an explicit mask "
                                   "matrix", "mask")
    object.__setattr__(obj, "mask", spec.explicit if spec.name == "explicit" else spec.name)
    object.__setattr__(obj, "window", spec.window)
    object.__setattr__(obj, "sparse_k", spec.sparse_k)


def mask_of(obj) -> Mask:
    if isinstance(obj.mask, str):
        return Mask(obj.mask, obj.window, obj.sparse_k)
    return Mask("explicit", explicit=obj.mask)


def mask_params(obj, out):
    out.update(mask_of(obj).params())
    return out


def check_mask_given(given, show):
    """``window`` / ``sparse_k`` given for a mask that does not take them are refused."""
    mask = given.get("mask") or "complete"
    if "window" in given and mask not in ("sliding", "causal-sliding"):
        raise CovsdeInputError(f"{show('window')} applies only to {show('mask')} sliding or "
                               f"causal-sliding, not {mask}")
    if "sparse_k" in given and mask != "sparse":
        raise CovsdeInputError(f"{show('sparse_k')} applies only to {show('mask')} sparse, "
                               f"not {mask}")


#: arch → model class: these, the models declared by installed packages (entry points
#: ``covsde.models``, :mod:`sde.registry`) and those registered with :func:`register_model`.
MODELS = ModelRegistry(ShapedAttention, ShapedMLP, ShapedMLPResidual, ShapedBlock)


def register_model(cls):
    """Make a model class available by its ``arch`` name (CLI ``--arch``, dataset attrs)."""
    if not (isinstance(cls, type) and issubclass(cls, Model) and cls.arch):
        raise TypeError("register_model takes a Model subclass with an arch name")
    MODELS[cls.arch] = cls
    return cls


def model_from_params(params: dict) -> Model:
    """Rebuild a model from :meth:`Model.params` (e.g. dataset attributes)."""
    arch = params.get("arch")
    if arch not in MODELS:
        raise CovsdeInputError(f"arch must be one of {', '.join(MODELS)}, got {arch!r}")
    cls = MODELS[arch]
    kwargs = {k: params[k] for k, _ in cls.parameters() if k in params}
    for k in ("heads", "window", "sparse_k"):
        if k in kwargs:
            kwargs[k] = int(kwargs[k])
    if kwargs.get("mask") == "explicit":
        kwargs["mask"] = json.loads(params["mask_matrix"])
    return cls(**kwargs)
