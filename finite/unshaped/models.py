"""Unshaped Transformers and the other papers' variants: model objects (docs/theory.md §2.4).

These architectures have no covariance SDE in covsde (``sde.simulate`` refuses them with a
one-line error); :func:`finite.sample` samples them literally. Sub-layers:

* :class:`SoftmaxAttention` — standard softmax attention ``attn(X) = concat_h(A_h X W^V_h)/√n``
  with logits ``S = (X W^Q)(X W^K)ᵀ/(n √n_k)``, ``A = softmax_rows(S)``; variants
  (``attention=``): ``"softmax"``; ``"value-skipinit"`` ``A ← α I + β A`` (He et al.);
  ``"e-spa"`` / ``"u-spa"``: W^Q = 0 and a fixed bias making the layer apply
  ``A_ℓ = L_ℓ L_{ℓ−1}^{-1}`` for a target kernel schedule Σ_ℓ (:mod:`finite.spa`); and
  similarity removal ``(I − θ 11ᵀ/m) attn(X)`` (Zhang & Yu; this project's reading);
* :class:`ReLUMLP` — He-scaled leaky ReLU MLP ``sqrt(2/(1+s²)) φ_s(X W¹/√n) W²/√n``;
* :class:`LayerNorm` — per token, centred over features and divided by the RMS (no gain);
* wrappers :class:`Residual` (``X + f(X)``) and :class:`PreNorm` (``X + f(LN(X))``).

Named compositions (``--arch``): :class:`PostLN`, :class:`PreLN`, :class:`AttentionOnly`,
:class:`Vanilla` (He et al., no skips, no LN).
"""
from __future__ import annotations

import dataclasses
import math

from sde.errors import CovsdeInputError
from sde.models import Model, Serial, check_mask_given, mask_of, mask_params, normalise_mask
from sde.parameters import parameter, shared
from sde.validation import check_finite_real, check_positive_int, is_real

from .. import weight_init

ATTENTIONS = ("softmax", "value-skipinit", "e-spa", "u-spa")
#: the attentions with a target kernel schedule (default end values:
#: :func:`finite.spa_vanilla.default_final`, E-SPA's depends on m)
SPA_FINAL_DEFAULT = {"e-spa": None, "u-spa": 0.8}

def _attention(default="softmax"):
    return parameter(default, help="attention variant: softmax, value-skipinit (A ← αI + βA), "
                     "e-spa or u-spa (fixed bias giving a target kernel schedule; He et al.)",
                     range="softmax, value-skipinit, e-spa or u-spa")


def _skip(which, default):
    return parameter(default, help=f"Value-SkipInit {which} (A ← αI + βA), finite networks "
                     f"only", range="finite")


def _spa_final():
    return parameter(None, help="final kernel parameter of the E-SPA/U-SPA schedule at the "
                     "run's depth: γ_L (e-spa; default: the γ_L whose target has mean token "
                     "correlation 0.8 at the run's m) or ρ_L (u-spa, default 0.8)",
                     range="γ_L > 0 or ρ_L in [0, 1)")


def _similarity_removal():
    return parameter(0.0, help="θ: the attention output loses θ × its mean token (Zhang & Yu; "
                     "post-ln)", range="in [0, 1]")


def _mlp_slope(default=0.0):
    return parameter(default, help="leaky ReLU slope s of the He-scaled MLP (0 = ReLU; vanilla "
                     "e-spa/u-spa default: the shaped slope that keeps the block's kernel on "
                     "the schedule, docs/theory.md §2.4g)", range="finite")


def _inits():
    """value_init, query_init, key_init fields (docs/theory.md §2.4e)."""
    return (parameter("gaussian", help="value weights W^V: gaussian, orthogonal (W^V/sqrt(n) "
                      "Haar), identity (W^V/sqrt(n) = I, attn(X) = A X) or a .npy file holding "
                      "W^V/sqrt(n) (n x n, the same in every layer)",
                      range="gaussian, orthogonal, identity or PATH.npy"),
            parameter("gaussian", help="query weights W^Q: gaussian or a .npy file (n x H n_k, "
                      "the same in every layer)", range="gaussian or PATH.npy"),
            parameter("gaussian", help="key weights W^K: gaussian or a .npy file (n x H n_k, "
                      "the same in every layer)", range="gaussian or PATH.npy"))


def _check_inits(obj):
    """value_init / query_init / key_init (:mod:`finite.weight_init`)."""
    weight_init.check_init("value_init", obj.value_init, weight_init.VALUE_INITS)
    for name in ("query_init", "key_init"):
        weight_init.check_init(name, getattr(obj, name), weight_init.QK_INITS)
        if obj.attention in SPA_FINAL_DEFAULT and getattr(obj, name) != "gaussian":
            raise CovsdeInputError(f"{name} does not apply to attention {obj.attention} "
                                   f"(W^Q = 0, logits = bias)", name)


def _no_limit(arch):
    raise CovsdeInputError(f"arch {arch} has no covariance SDE in covsde: sample it with "
                           f"finite.sample (covsde finite)")


class _FiniteOnly:
    has_limit = False

    def _limit(self):
        _no_limit(self.arch)


@dataclasses.dataclass(frozen=True)
class SoftmaxAttention(_FiniteOnly, Model):
    """Standard (unshaped) multi-head softmax attention, no skip (docs/theory.md §2.4)."""

    heads: int = shared("heads", 1)
    attention: str = _attention()
    skip_alpha: float = _skip("α", 1.0)
    skip_beta: float = _skip("β", 0.0)
    spa_final: float | None = _spa_final()
    similarity_removal: float = _similarity_removal()
    #: a name of :data:`sde.masks.MASKS`, or (Python only) a 0/1 matrix with unit diagonal
    mask: str = shared("mask", "complete")
    window: int = shared("window", 0)
    sparse_k: int = shared("sparse_k", 0)
    value_init: str = _inits()[0]
    query_init: str = _inits()[1]
    key_init: str = _inits()[2]
    #: E-SPA/U-SPA inside a vanilla block: aim at the pre-image of the schedule under the
    #: following MLP of slope ``mlp_slope`` (None: the shaped slope); docs/theory.md §2.4g
    followed_by_mlp: bool = parameter(False, help="E-SPA/U-SPA followed by an MLP in a vanilla "
                                      "block: aim at the MLP's pre-image of the schedule")
    mlp_slope: float | None = _mlp_slope(None)
    arch = "softmax-attention"
    summary = "standard softmax attention sub-layer"

    def __post_init__(self):
        check_positive_int("heads", self.heads)
        normalise_mask(self)
        if self.attention not in ATTENTIONS:
            raise CovsdeInputError(f"attention must be one of {', '.join(ATTENTIONS)}, got "
                                   f"{self.attention!r}", "attention")
        check_finite_real("skip_alpha", self.skip_alpha)
        check_finite_real("skip_beta", self.skip_beta)
        th = self.similarity_removal
        if not is_real(th) or not (0.0 <= th <= 1.0):
            raise CovsdeInputError(f"similarity_removal must be in [0, 1], got {th!r}",
                                   "similarity_removal")
        if self.spa_final is not None:
            if self.attention not in SPA_FINAL_DEFAULT:
                raise CovsdeInputError("spa_final applies only to attention e-spa or u-spa",
                                       "spa_final")
            f = self.spa_final
            ok = is_real(f) and math.isfinite(f) and (
                f > 0 if self.attention == "e-spa" else 0.0 <= f < 1.0)
            if not ok:
                want = "> 0 (γ_L)" if self.attention == "e-spa" else "in [0, 1) (ρ_L)"
                raise CovsdeInputError(f"spa_final must be {want} for {self.attention}, got "
                                       f"{f!r}", "spa_final")
        if self.attention != "value-skipinit" and (self.skip_alpha, self.skip_beta) != (1.0, 0.0):
            raise CovsdeInputError("skip_alpha/skip_beta apply only to attention value-skipinit",
                                   "skip_alpha")
        _check_inits(self)
        if self.followed_by_mlp and self.attention not in SPA_FINAL_DEFAULT:
            raise CovsdeInputError("followed_by_mlp applies only to attention e-spa or u-spa",
                                   "followed_by_mlp")
        if self.mlp_slope is not None:
            check_finite_real("mlp_slope", self.mlp_slope)
        if self.attention in SPA_FINAL_DEFAULT and self.mask_spec.name != "complete":
            raise CovsdeInputError(f"mask applies only to attention softmax or value-skipinit: "
                                   f"{self.attention} builds its own causal matrices", "mask")

    @property
    def mask_spec(self):
        """The attention mask (docs/theory.md §2.4)."""
        return mask_of(self)

    def params(self):
        return mask_params(self, Model.params(self))

    def spa_final_at(self, m):
        """spa_final, or the variant's default at m tokens (None without a schedule)."""
        if self.attention not in SPA_FINAL_DEFAULT:
            return None
        from ..spa_vanilla import default_final

        return self.spa_final if self.spa_final is not None else \
            default_final(self.attention, m)


@dataclasses.dataclass(frozen=True)
class ReLUMLP(_FiniteOnly, Model):
    """He-scaled leaky ReLU MLP, no skip: ``sqrt(2/(1+s²)) φ_s(X W¹/√n) W²/√n``. With
    ``mlp_slope=None`` the slope is the shaped one of the E-SPA/U-SPA schedule ``spa`` (final
    value ``spa_final``) it follows in a vanilla block (docs/theory.md §2.4g)."""

    mlp_slope: float | None = _mlp_slope()
    spa: str = parameter("", help="the E-SPA/U-SPA schedule this MLP follows in a vanilla block "
                         "(for the shaped slope, mlp_slope None)")
    spa_final: float | None = _spa_final()
    arch = "relu-mlp"
    summary = "He-scaled leaky ReLU MLP sub-layer"

    def __post_init__(self):
        if self.mlp_slope is None:
            if self.spa not in SPA_FINAL_DEFAULT:
                raise CovsdeInputError("mlp_slope None (shaped) needs spa e-spa or u-spa",
                                       "mlp_slope")
        else:
            check_finite_real("mlp_slope", self.mlp_slope)


@dataclasses.dataclass(frozen=True)
class LayerNorm(_FiniteOnly, Model):
    """LayerNorm at initialisation: each token row centred over its n features and divided by
    its root-mean-square (no gain, no bias, ε = 0), so ``V_aa = 1`` afterwards."""

    arch = "layernorm"
    summary = "LayerNorm"


class _Wrapper(_FiniteOnly, Model):
    def __init__(self, inner):
        if not isinstance(inner, Model) or len(inner.sublayers()) != 1:
            raise CovsdeInputError(f"{type(self).__name__} wraps one sub-layer")
        object.__setattr__(self, "inner", inner)

    @property
    def heads(self):
        return self.inner.heads

    @property
    def mask_spec(self):
        return self.inner.mask_spec

    def params(self):
        return {"arch": self.arch, "inner": repr(self.inner.params())}

    def __eq__(self, other):
        return type(other) is type(self) and other.inner == self.inner

    def __hash__(self):
        return hash((type(self).__name__, self.inner))

    def __repr__(self):
        return f"{type(self).__name__}({self.inner!r})"


class Residual(_Wrapper):
    """``X + f(X)``."""

    arch = "residual"


class PreNorm(_Wrapper):
    """``X + f(LN(X))`` (the pre-LN residual branch)."""

    arch = "pre-norm"


# ---------------------------------------------------------------- named compositions

@dataclasses.dataclass(frozen=True)
class _Block(_FiniteOnly, Serial):
    heads: int = shared("heads", 1)
    attention: str = _attention()
    skip_alpha: float = _skip("α", 1.0)
    skip_beta: float = _skip("β", 0.0)
    spa_final: float | None = _spa_final()
    mask: str = shared("mask", "complete")
    window: int = shared("window", 0)
    sparse_k: int = shared("sparse_k", 0)
    value_init: str = _inits()[0]
    query_init: str = _inits()[1]
    key_init: str = _inits()[2]

    def __post_init__(self):
        normalise_mask(self)
        Serial.__init__(self, *self._parts())

    def _attn(self, **extra):
        return SoftmaxAttention(self.heads, self.attention, self.skip_alpha, self.skip_beta,
                                self.spa_final, mask=self.mask, window=self.window,
                                sparse_k=self.sparse_k, value_init=self.value_init,
                                query_init=self.query_init, key_init=self.key_init, **extra)

    @property
    def mask_spec(self):
        return mask_of(self)

    def params(self):
        return mask_params(self, Model.params(self))

    replace = Model.replace

    @classmethod
    def check_given(cls, given, show=str):
        check_mask_given(given, show)
        att = given.get("attention") or "softmax"
        if att != "value-skipinit" and {"skip_alpha", "skip_beta"} & set(given):
            raise CovsdeInputError(f"{show('skip_alpha')}/{show('skip_beta')} apply only to "
                                   f"{show('attention')} value-skipinit")
        if att not in SPA_FINAL_DEFAULT and "spa_final" in given:
            raise CovsdeInputError(f"{show('spa_final')} applies only to {show('attention')} "
                                   f"e-spa or u-spa")


@dataclasses.dataclass(frozen=True, eq=True)
class PostLN(_Block):
    """Post-LN block: ``X ← LN(X + attn(X))``, then ``X ← LN(X + mlp(X))``."""

    similarity_removal: float = _similarity_removal()
    mlp_slope: float = _mlp_slope()
    arch = "post-ln"
    summary = "post-LN Transformer block (standard attention)"

    def _parts(self):
        return (Residual(self._attn(similarity_removal=self.similarity_removal)), LayerNorm(),
                Residual(ReLUMLP(self.mlp_slope)), LayerNorm())


@dataclasses.dataclass(frozen=True, eq=True)
class PreLN(_Block):
    """Pre-LN block: ``X ← X + attn(LN(X))``, then ``X ← X + mlp(LN(X))``."""

    mlp_slope: float = _mlp_slope()
    arch = "pre-ln"
    summary = "pre-LN Transformer block (standard attention)"

    def _parts(self):
        return (PreNorm(self._attn()), PreNorm(ReLUMLP(self.mlp_slope)))


@dataclasses.dataclass(frozen=True, eq=True)
class AttentionOnly(_Block):
    """Attention-only stack: ``X ← attn(X)`` (no skip, no MLP), LN after it if ``layernorm``."""

    layernorm: bool = parameter(False, help="attention-only: LayerNorm after each layer")
    arch = "attention-only"
    summary = "attention-only stack (standard attention, no skip; --layernorm adds LN)"

    def _parts(self):
        return (self._attn(), LayerNorm()) if self.layernorm else (self._attn(),)


@dataclasses.dataclass(frozen=True, eq=True)
class Vanilla(_Block):
    """He et al.'s vanilla block, no skips and no LN: ``X ← attn(X)``, then ``X ← mlp(X)``."""

    mlp_slope: float | None = _mlp_slope(None)
    arch = "vanilla"
    summary = "vanilla Transformer block (no skips, no LN; He et al.)"

    def _parts(self):
        if self.attention in SPA_FINAL_DEFAULT:     # the block keeps the schedule (§2.4g)
            return (self._attn(followed_by_mlp=True, mlp_slope=self.mlp_slope),
                    ReLUMLP(self.mlp_slope, spa=self.attention, spa_final=self.spa_final))
        return (self._attn(), ReLUMLP(0.0 if self.mlp_slope is None else self.mlp_slope))


#: the named stacks, by ``arch`` in :data:`sde.models.MODELS`: declared to the registry by the
#: entry point ``covsde.models`` (pyproject.toml), so that no import registers anything.
MODELS = (PostLN, PreLN, AttentionOnly, Vanilla)
