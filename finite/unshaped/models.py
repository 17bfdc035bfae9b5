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

ATTENTIONS = ("softmax", "value-skipinit", "e-spa", "u-spa")
#: default final kernel parameter: γ_L for E-SPA, ρ_L for U-SPA
SPA_FINAL_DEFAULT = {"e-spa": 0.005, "u-spa": 0.8}

def _attention(default="softmax"):
    return parameter(default, help="attention variant: softmax, value-skipinit (A ← αI + βA), "
                     "e-spa or u-spa (fixed bias giving a target kernel schedule; He et al.)",
                     range="softmax, value-skipinit, e-spa or u-spa")


def _skip(which, default):
    return parameter(default, help=f"Value-SkipInit {which} (A ← αI + βA), finite networks "
                     f"only", range="finite")


def _spa_final():
    return parameter(None, help="final kernel parameter of the E-SPA/U-SPA schedule at the "
                     "run's depth: γ_L (e-spa, default 0.005) or ρ_L (u-spa, default 0.8)",
                     range="γ_L > 0 or ρ_L in [0, 1)")


def _similarity_removal():
    return parameter(0.0, help="θ: the attention output loses θ × its mean token (Zhang & Yu; "
                     "post-ln)", range="in [0, 1]")


def _mlp_slope():
    return parameter(0.0, help="leaky ReLU slope s of the He-scaled MLP (0 = ReLU)",
                     range="finite")


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
        if self.attention in SPA_FINAL_DEFAULT and self.mask_spec.name != "complete":
            raise CovsdeInputError(f"mask applies only to attention softmax or value-skipinit: "
                                   f"{self.attention} builds its own causal matrices", "mask")

    @property
    def mask_spec(self):
        """The attention mask (docs/theory.md §2.4)."""
        return mask_of(self)

    def params(self):
        return mask_params(self, Model.params(self))

    @property
    def spa_final_value(self):
        """spa_final, or the variant's default."""
        return self.spa_final if self.spa_final is not None else \
            SPA_FINAL_DEFAULT.get(self.attention)


@dataclasses.dataclass(frozen=True)
class ReLUMLP(_FiniteOnly, Model):
    """He-scaled leaky ReLU MLP, no skip: ``sqrt(2/(1+s²)) φ_s(X W¹/√n) W²/√n``."""

    mlp_slope: float = _mlp_slope()
    arch = "relu-mlp"
    summary = "He-scaled leaky ReLU MLP sub-layer"

    def __post_init__(self):
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

    def __post_init__(self):
        normalise_mask(self)
        Serial.__init__(self, *self._parts())

    def _attn(self, **extra):
        return SoftmaxAttention(self.heads, self.attention, self.skip_alpha, self.skip_beta,
                                self.spa_final, mask=self.mask, window=self.window,
                                sparse_k=self.sparse_k, **extra)

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

    mlp_slope: float = _mlp_slope()
    arch = "vanilla"
    summary = "vanilla Transformer block (no skips, no LN; He et al.)"

    def _parts(self):
        return (self._attn(), ReLUMLP(self.mlp_slope))


#: the named stacks, by ``arch`` in :data:`sde.models.MODELS`: declared to the registry by the
#: entry point ``covsde.models`` (pyproject.toml), so that no import registers anything.
MODELS = (PostLN, PreLN, AttentionOnly, Vanilla)
