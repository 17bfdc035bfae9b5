"""Finite maps of the unshaped sub-layers (:mod:`finite.unshaped`; docs/theory.md §2.4),
registered by model type like the shaped ones (:mod:`finite.layers`).

Reduced samplers (exact, docs/theory.md §5.8) exist for the layers without a skip or LN:
softmax attention (any variant, mask, similarity removal) and the He-scaled MLP, so the
attention-only (without LN) and vanilla stacks reduce; LayerNorm and the residual/LN wrappers
are literal only. Softmax attention, head h, with ``L Lᵀ = V = Σ_h V_h``: logits
``S_h = L G_Q G_Kᵀ Lᵀ / sqrt(n_k)`` (``(XW^Q/√n, XW^K/√n) =d (L G_Q, L G_K)``), values
``X W^V_h /√n =d L G_h``, so ``V'_h = A_h L W_h Lᵀ A_hᵀ / n`` with ``W_h ~ Wishart_m(n/H)``.
MLP: ``V''_h = c R W_h Rᵀ / n``, ``R Rᵀ`` the hidden Gram ``φ(LG)φ(LG)ᵀ/n``, c = 2/(1+s²).

Shapes: X is (p, m, n) (p paths, a row per token); weights come from
:func:`finite.literal.draw_weights` in the order of ``literal_shapes()``.
"""
import math

import numpy as np

from .. import reduced as red
from .. import spa
from .. import spa_vanilla
from .. import weight_init as wi
from ..layers import FiniteLayer, bind, concat, count_clipped, register
from ..shaping import masked_softmax_rows, softmax_rows
from .models import LayerNorm, PreNorm, ReLUMLP, Residual, SoftmaxAttention


def layer_norm(X):
    """Each token row centred over its n features and divided by its RMS (ε = 0)."""
    Xc = X - X.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Xc / np.sqrt((Xc * Xc).mean(axis=-1, keepdims=True))


@register(SoftmaxAttention)
class FiniteSoftmaxAttention(FiniteLayer):
    """Standard attention ``concat_h(A_h X W^V_h)/√n`` and its variants; with a mask the
    softmax runs over the allowed keys only (a masked entry of A is exactly 0)."""

    takes_key_width = True

    def __init__(self, spec, width, heads, key_width, depth=None):
        super().__init__(spec, width, heads, key_width, depth)
        self.spa = spec.attention in ("e-spa", "u-spa")
        self.spa_A = None
        n, H = width, heads
        qk = (n, H * key_width) if key_width else None
        # fixed matrices (None: drawn per layer and path); M = W^V/sqrt(n) for the values
        self.fixed = {}
        for name, shape in (("query_init", qk), ("key_init", qk), ("value_init", (n, n))):
            init = getattr(spec, name)
            if wi.is_file_init(init):
                self.fixed[name] = wi.load_matrix(name, init, shape)
        if spec.value_init == "identity":
            self.fixed["value_init"] = np.eye(n)
        self.orthogonal = spec.value_init == "orthogonal"
        # exact reduced sampler: Gaussian queries/keys, values Gaussian, identity, or
        # orthogonal with one head (then V' = A V Aᵀ as for identity values)
        self.has_reduced = (not ({"query_init", "key_init"} & set(self.fixed))
                            and (spec.value_init in ("gaussian", "identity")
                                 or (self.orthogonal and H == 1)))
        # the law depends on X0 beyond V0 when a weight matrix is fixed and not the identity
        self.rotation_invariant = not any(wi.is_file_init(getattr(spec, k))
                                          for k in ("query_init", "key_init", "value_init"))

    def prepare(self, m):
        if self.spa:
            kind, final = self.spec.attention, self.spec.spa_final_at(m)
            self.spa_final_used = final
            if self.spec.followed_by_mlp:
                slope = self.spec.mlp_slope
                if slope is None:
                    slope = spa_vanilla.shaped_slope(kind, final, m, self.depth)
                A = spa_vanilla.attention_matrices(kind, final, m, self.depth, slope)
                self.schedule_error = spa_vanilla.schedule_error(kind, final, m, self.depth,
                                                                 slope)
            else:
                A = spa.attention_matrices(kind, final, m, self.depth)
            B, D = spa.bias_and_scale(A)
            # the layer's matrix as the network computes it: D ⊙ softmax(B)
            self.spa_A = D[..., None] * softmax_rows(B)

    def _slots(self):
        """(name, shape) of the weight matrices in draw order."""
        n, H, nk = self.width, self.heads, self.key_width
        if self.spa:
            return [("value_init", (n, n))]      # W^Q = 0, logits = bias only: W^V alone
        return [("query_init", (n, H * nk)), ("key_init", (n, H * nk)), ("value_init", (n, n))]

    def literal_shapes(self):
        return [shape for name, shape in self._slots() if name not in self.fixed]

    def _weights(self, drawn):
        """{slot name: matrix} from the drawn matrices and the fixed ones. Values: the drawn
        Gaussian W^V (p, n, n), or ``M = W^V/√n`` (orthogonal: p, n, n; fixed: n, n)."""
        drawn = list(drawn)
        out = {}
        for name, _ in self._slots():
            if name in self.fixed:
                out[name] = self.fixed[name]
            else:
                W = drawn.pop(0)
                out[name] = wi.haar_orthogonal(W) if name == "value_init" and self.orthogonal \
                    else W
        return out

    def _from_logits(self, S):
        """A from logits S (..., m, m): masked softmax, then Value-SkipInit."""
        m, s = S.shape[-1], self.spec
        M = self.mask_matrix(m)
        A = softmax_rows(S) if M is None else masked_softmax_rows(S, M)
        if s.attention == "value-skipinit":
            A = s.skip_alpha * np.eye(m) + s.skip_beta * A
        return A

    def attention_matrix(self, X, weights, layer):
        """A (p, H, m, m) of this layer for X (p, m, n)."""
        p, m, n = X.shape
        H, nk = self.heads, self.key_width
        if self.spa:
            return np.broadcast_to(self.spa_A[layer], (p, H, m, m))
        w = self._weights(weights)
        WQ, WK = w["query_init"], w["key_init"]
        Q = (X @ WQ).reshape(p, m, H, nk).transpose(0, 2, 1, 3)
        K = (X @ WK).reshape(p, m, H, nk).transpose(0, 2, 1, 3)
        return self._from_logits(Q @ np.swapaxes(K, -1, -2) / (n * math.sqrt(nk)))

    def reduced(self, Vh, gens, slices, alive, layer=0, record=None):
        """``record``: a dict that receives this layer's draws ``QK`` (None for E-SPA/U-SPA)
        and ``W`` (:mod:`finite.consensus` follows the same network with them)."""
        p, H, m, _ = Vh.shape
        n, nk, th = self.width, self.key_width, self.spec.similarity_removal
        L, fL = red.psd_factor(Vh.sum(axis=1))

        gaussian_values = self.spec.value_init == "gaussian"

        def draws(gen, q):
            QK = None if self.spa else red.query_key_product(gen, (q, H), m, nk)
            return QK, (red.wishart(gen, (q, H), m, n // H) if gaussian_values else None)

        parts = [draws(g, sl.stop - sl.start) for g, sl in zip(gens, slices)]
        Lx = L[:, None]
        if self.spa:
            A = np.broadcast_to(self.spa_A[layer], (p, H, m, m))
        else:
            QK = np.concatenate([qk for qk, _ in parts])
            A = self._from_logits(Lx @ QK @ np.swapaxes(Lx, -1, -2) / math.sqrt(nk))
        W = np.concatenate([w for _, w in parts]) if gaussian_values else None
        if record is not None:
            record.update(QK=None if self.spa else QK, W=W)
        if th:
            A = (np.eye(m) - th / m) @ A
        if not gaussian_values:     # identity (or orthogonal, one head): V'_h = A_h V_h A_hᵀ
            return A @ Vh @ np.swapaxes(A, -1, -2), fL == red.FACTOR_FAILED, \
                count_clipped(alive, fL)
        AL = A @ Lx
        Vh = AL @ W @ np.swapaxes(AL, -1, -2) / n
        return Vh, fL == red.FACTOR_FAILED, count_clipped(alive, fL)

    def literal(self, X, weights, layer=0):
        p, m, n = X.shape
        H = self.heads
        A = self.attention_matrix(X, weights, layer)
        M = self._weights(weights)["value_init"]
        XV = X if self.spec.value_init == "identity" else X @ M
        XV = XV.reshape(p, m, H, n // H).transpose(0, 2, 1, 3)
        out = (A @ XV).transpose(0, 2, 1, 3).reshape(p, m, n)
        if self.spec.value_init == "gaussian":
            out = out / math.sqrt(n)
        th = self.spec.similarity_removal
        if th:
            out = out - th * out.mean(axis=1, keepdims=True)
        return out

    def kernel_step(self, V, layer):
        """Width-first map ``V → A V Aᵀ`` where A is deterministic (E-SPA/U-SPA, and
        Value-SkipInit with β = 0: A = αI), else None. Similarity removal multiplies by
        ``(I − θ11ᵀ/m)`` on both sides."""
        s, m = self.spec, V.shape[-1]
        if "value_init" in self.fixed and s.value_init != "identity":
            return None
        if self.spa:
            A = self.spa_A[layer]
        elif s.attention == "value-skipinit" and s.skip_beta == 0.0:
            A = s.skip_alpha * np.eye(m)
        else:
            return None
        if s.similarity_removal:
            A = (np.eye(m) - s.similarity_removal / m) @ A
        return A @ V @ A.T

    def run_attrs(self):
        out = {} if not self.spa else {"spa_final_used": float(self.spa_final_used)}
        if self.spa and self.spec.followed_by_mlp:
            out["schedule_error"] = float(self.schedule_error)
        return out

    def literal_cost(self, m):
        n, H, nk = self.width, self.heads, self.key_width
        normals = sum(a * b for a, b in self.literal_shapes())
        return normals, 2.0 * m * n * (2 * H * nk + n) + 4.0 * H * m * m * (nk + n / H)


@register(ReLUMLP)
class FiniteReLUMLP(FiniteLayer):
    """``sqrt(2/(1+s²)) φ_s(X W¹/√n) W²/√n``, φ_s the leaky ReLU of slope s."""

    def __init__(self, spec, width, heads, key_width, depth=None):
        super().__init__(spec, width, heads, key_width, depth)
        self.slope = spec.mlp_slope

    def prepare(self, m):
        if self.spec.mlp_slope is None:      # shaped for the schedule it follows (§2.4g)
            from .models import SoftmaxAttention

            final = SoftmaxAttention(attention=self.spec.spa,
                                     spa_final=self.spec.spa_final).spa_final_at(m)
            self.slope = spa_vanilla.shaped_slope(self.spec.spa, final, m, self.depth)

    def run_attrs(self):
        return {"mlp_slope_used": float(self.slope)}

    def kernel_step(self, V, layer):
        """Width first the MLP maps V entrywise: ``sqrt(V_aa V_bb) κ_s(ρ_ab)`` (§2.4g)."""
        return spa_vanilla.mlp_map(V, self.slope)

    def literal_shapes(self):
        return [(self.width, self.width), (self.width, self.width)]

    def literal(self, X, weights, layer=0):
        W1, W2 = weights
        n, s = self.width, self.slope
        H = X @ W1 / math.sqrt(n)
        act = np.maximum(H, 0.0) + s * np.minimum(H, 0.0)
        return math.sqrt(2.0 / (1.0 + s * s)) * (act @ W2) / math.sqrt(n)

    def literal_cost(self, m):
        return 2 * self.width ** 2, 4.0 * m * self.width ** 2

    def reduced_work(self, m):
        return m * self.width / 5e3

    def reduced(self, Vh, gens, slices, alive, layer=0):
        p, H, m, _ = Vh.shape
        n, s = self.width, self.slope
        L, fL = red.psd_factor(Vh.sum(axis=1))

        def phi(x):
            return np.maximum(x, 0.0) + s * np.minimum(x, 0.0)

        parts = []
        for g, sl in zip(gens, slices):
            K = red.hidden_gram(g, L[sl], phi, n, slopes=(1.0, s))
            parts.append((K, red.wishart(g, (sl.stop - sl.start, H), m, n // H)))
        K, W = concat(parts)
        R, fR = red.psd_factor(K)
        Rx = R[:, None]
        Vh = (2.0 / (1.0 + s * s)) * (Rx @ W @ np.swapaxes(Rx, -1, -2)) / n
        failed = (fL == red.FACTOR_FAILED) | (fR == red.FACTOR_FAILED)
        return Vh, failed, count_clipped(alive, fL, fR)


@register(LayerNorm)
class FiniteLayerNorm(FiniteLayer):
    """LayerNorm: no weights. It centres over the n features, which is not invariant under
    rotations of feature space."""

    has_reduced = False
    rotation_invariant = False

    def literal_shapes(self):
        return []

    def literal(self, X, weights, layer=0):
        return layer_norm(X)

    def literal_cost(self, m):
        return 0, 5.0 * m * self.width


class _FiniteWrapper(FiniteLayer):
    has_reduced = False

    def __init__(self, spec, width, heads, key_width, depth=None):
        super().__init__(spec, width, heads, key_width, depth)
        (self.inner,) = bind(spec.inner, width, heads, key_width, depth)
        self.takes_key_width = self.inner.takes_key_width
        self.rotation_invariant = self.inner.rotation_invariant and not isinstance(spec, PreNorm)

    @property
    def seed(self):
        return self.inner.seed

    @seed.setter
    def seed(self, value):   # the run's seed reaches the wrapped layer (sparse masks)
        self.inner.seed = value

    def prepare(self, m):
        self.inner.prepare(m)

    def literal_shapes(self):
        return self.inner.literal_shapes()

    def literal_cost(self, m):
        normals, flops = self.inner.literal_cost(m)
        return normals, flops + 2.0 * m * self.width


@register(Residual)
class FiniteResidual(_FiniteWrapper):
    def literal(self, X, weights, layer=0):
        return X + self.inner.literal(X, weights, layer)


@register(PreNorm)
class FinitePreNorm(_FiniteWrapper):
    def literal(self, X, weights, layer=0):
        return X + self.inner.literal(layer_norm(X), weights, layer)
