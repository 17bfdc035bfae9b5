"""The finite side of each sub-layer: literal and reduced maps registered by model type.

The model objects (:mod:`sde.models`) hold a sub-layer's parameters and its limit; this
module registers, for each sub-layer type, the class that samples its finite network
(docs/theory.md §2, §5), so that ``sde`` never imports ``finite`` (imports point
compare → finite → sde). :func:`bind` turns a model into the list of bound finite layers of
one network layer; :func:`finite.sample` drives them without knowing what they are.

A bound layer (:class:`FiniteLayer`) owns, for one run (width n, heads H, key width n_k):

* ``literal_shapes()`` and ``literal(X, weights, layer)``: its weight shapes in draw order
  and its map ``X → X'`` on X (p, m, n) at network layer ``layer`` (0-based; only
  depth-dependent layers such as E-SPA use it) (:mod:`finite.literal`);
* ``reduced(Vh, gens, slices, alive, layer)``: its exact reduced map on the head-block Grams
  Vh (p, H, m, m), drawing from the RNG blocks ``gens`` (a :class:`finite.streams.BlockStreams`:
  its ``rows`` feed the kernels of :mod:`finite.reduced_kernels`, and iterating it gives one
  stream per block, with ``standard_normal`` like a Generator) holding the paths ``slices``,
  in a fixed order; returns ``(Vh', failed, n_clipped)`` (:mod:`finite.reduced`);
* ``literal_cost(m)`` → (normals, flops) of one literal layer for one path, and
  ``reduced_work(m)``, the relative cost of one reduced layer (progress heuristics only);
* ``takes_key_width``: whether the key width n_k applies; ``has_reduced``: whether an exact
  reduced sampler exists (the literal one always does);
* ``prepare(m)``: precomputation once per run (e.g. E-SPA's attention matrices).

Register a new sub-layer with ``@register(ModelType)`` (see docs/developing.md,
"Adding an architecture").
"""
import numpy as np

from sde.activations import ShapedTanh
from sde.models import ShapedAttention, ShapedMLP, ShapedMLPResidual

from . import literal as lit
from . import reduced as red
from . import reduced3 as r3
from . import reduced_kernels as rk
from .streams import BlockStreams

_REGISTRY = {}


def register(model_type):
    """Class decorator: the finite layer class of the sub-layer type ``model_type``."""
    def deco(cls):
        _REGISTRY[model_type] = cls
        return cls
    return deco


def finite_class(sublayer):
    """The registered finite layer class of a sub-layer object."""
    for t in type(sublayer).__mro__:
        if t in _REGISTRY:
            return _REGISTRY[t]
    raise TypeError(f"no finite sampler registered for {type(sublayer).__name__}")


def _leaf(sublayer):
    """The sub-layer a wrapper (``inner``) applies, else the sub-layer itself."""
    return _leaf(sublayer.inner) if hasattr(sublayer, "inner") else sublayer


def takes_key_width(model):
    """Whether any sub-layer of ``model`` has a key width."""
    return any(finite_class(_leaf(s)).takes_key_width for s in model.sublayers())


def bind(model, width, heads, key_width, depth=None, seed=None):
    """The bound finite layers of one layer of ``model`` at width ``width``, in order.

    ``depth``: the run's number of layers (for depth-dependent layers such as E-SPA);
    ``seed``: the run's seed, from which a sparse attention mask's graph is drawn.
    """
    layers = [finite_class(s)(s, width, heads, key_width, depth) for s in model.sublayers()]
    for layer in layers:
        layer.seed = seed
    return layers


def concat(parts):
    """Concatenate per-block tuples of draws along the path axis."""
    return tuple(np.concatenate(a, axis=0) for a in zip(*parts))


def count_clipped(alive, *flags):
    """Factorisations of alive paths that needed round-off eigenvalues clipped."""
    total = 0
    for f in flags:
        a = alive if f.ndim == 1 else alive[:, None]
        total += int(np.count_nonzero((f == red.FACTOR_CLIPPED) & a))
    return total


class FiniteLayer:
    """A sub-layer bound to one run's width, heads and key width."""

    takes_key_width = False
    #: whether ``reduced`` is an exact reduced sampler of this layer (else literal only)
    has_reduced = True

    #: the run's seed (set by :func:`bind`; draws a sparse mask's graph)
    seed = None
    #: whether the layer's law commutes with rotations of each head block of features (then
    #: a network's law depends on X0 only through V0; docs/theory.md §2.4f)
    rotation_invariant = True

    def __init__(self, spec, width, heads, key_width, depth=None):
        self.spec, self.width, self.heads, self.key_width = spec, width, heads, key_width
        self.depth = depth

    def prepare(self, m):
        """Precompute what depends on the number of tokens m (called once per run)."""

    def run_attrs(self):
        """Values this layer resolved for the run (recorded in the output attrs)."""
        return {}

    def kernel_step(self, V, layer):
        """The width-first (n → ∞ first) map of V where it is exact and deterministic, else
        None (see :func:`finite.kernel_map.kernel_map`)."""
        return None

    def reduced_work(self, m):
        return 0.0

    def mask_matrix(self, m):
        """The realised 0/1 attention mask at m tokens (the spec's ``mask_spec``), or None for
        the complete mask (the unmasked code path, unchanged). Cached per m."""
        cache = self.__dict__.setdefault("_masks", {})
        if m not in cache:
            M = self.spec.mask_spec.matrix(m, self.seed)
            cache[m] = None if np.all(M == 1) else M
        return cache[m]

    def _factors(self, Vh):
        """PSD-safe factors of V = Σ_h V_h and of each V_h, and their failure mask."""
        L, fL = red.psd_factor(Vh.sum(axis=1))
        Lh, fLh = red.psd_factor(Vh)
        failed = (fL == red.FACTOR_FAILED) | (fLh == red.FACTOR_FAILED).any(axis=1)
        return L, fL, Lh, fLh, failed


@register(ShapedAttention)
class FiniteShapedAttention(FiniteLayer):
    """Shaped attention sub-block (§2.1; reduced: §5, O(m³) per layer)."""

    takes_key_width = True

    def literal_shapes(self):
        return lit.attention_shapes(self.width, self.heads, self.key_width)

    def literal(self, X, weights, layer=0):
        s = self.spec
        return lit.attention_layer(X, weights, s.gamma, s.tau0, self.heads, self.key_width,
                                   self.mask_matrix(X.shape[-2]))

    def literal_cost(self, m):
        n, H, nk = self.width, self.heads, self.key_width
        normals = lit.weight_count(self.literal_shapes())
        flops = 2.0 * m * n * (2 * H * nk + n) + 4.0 * H * m * m * (nk + n / H)
        return normals, flops

    def reduced(self, Vh, gens, slices, alive, layer=0, record=None):
        """``record``: a dict that receives the draws QK, M, W (:mod:`finite.consensus`)."""
        m, n, s = Vh.shape[-1], self.width, self.spec
        mask, centre = red._mask_and_centre(self.mask_matrix(m), m)
        rec = np.empty((3, Vh.shape[0], self.heads, m, m) if record is not None else (3, 1, 1, 1, 1))
        kernel = r3.attention_kernel_for(m, Vh.shape[1], record is not None, n,
                                         self.key_width)
        out = _run_kernel(kernel, Vh, gens, slices, alive, s.gamma, s.tau0,
                          int(n), int(self.key_width), mask, centre, red.PSD_TOL,
                          extra=(rec, record is not None))
        if record is not None:
            record.update(QK=rec[0], M=rec[1], W=rec[2])
        return out


@register(ShapedMLPResidual)
class FiniteShapedMLPResidual(FiniteLayer):
    """Residual shaped MLP sub-block (§2.2; reduced: hidden Gram, §5)."""

    def __init__(self, spec, width, heads, key_width, depth=None):
        super().__init__(spec, width, heads, key_width, depth)
        self.act = spec.shaped_activation
        self.phi, self.c = self.act.at_width(width)

    def literal_shapes(self):
        return lit.mlp_shapes(self.width)

    def literal(self, X, weights, layer=0):
        return lit.mlp_res_layer(X, weights, self.spec.gamma, self.phi, self.c)

    def literal_cost(self, m):
        return lit.weight_count(self.literal_shapes()), 4.0 * m * self.width ** 2

    def reduced_work(self, m):
        return m * self.width / 5e3

    def reduced(self, Vh, gens, slices, alive, layer=0):
        return self._reduced_mlp(Vh, gens, slices, alive, True)

    def _reduced_mlp(self, Vh, gens, slices, alive, residual):
        n = self.width
        act, a1, a2 = self._kernel_activation()
        K = np.empty((0, 1, 1))
        if act == rk.ACT_GIVEN:   # an activation without a kernel form: Gram in numpy
            L, _ = red.psd_factor(Vh.sum(axis=1))
            K = np.concatenate([red.hidden_gram(g, L[sl], self.phi, n)
                                for g, sl in zip(gens, slices)])
        gamma = self.spec.gamma if residual else 1.0
        kernel = r3.mlp_kernel_for(Vh.shape[-1], Vh.shape[1], residual, n, act)
        return _run_kernel(kernel, Vh, gens, slices, alive, residual, gamma, self.c,
                           int(n), act, a1, a2, K, red.PSD_TOL)

    def _kernel_activation(self):
        """(code, a1, a2) of the activation for :func:`finite.reduced_kernels.mlp_kernel`."""
        slopes = self.act.slopes(self.width)
        if slopes is not None:
            return rk.ACT_RELU, float(slopes[0]), float(slopes[1])
        if isinstance(self.act, ShapedTanh):
            return rk.ACT_TANH, float(self.act.a * np.sqrt(self.width)), 0.0
        return rk.ACT_GIVEN, 0.0, 0.0


@register(ShapedMLP)
class FiniteShapedMLP(FiniteShapedMLPResidual):
    """Li–Nica–Roy shaped MLP without residual (§2.3; reduced: hidden Gram, §5)."""

    def literal_shapes(self):
        return lit.lnr_shapes(self.width)

    def literal(self, X, weights, layer=0):
        return lit.lnr_layer(X, weights, self.phi, self.c)

    def literal_cost(self, m):
        return lit.weight_count(self.literal_shapes()), 2.0 * m * self.width ** 2

    def reduced(self, Vh, gens, slices, alive, layer=0):
        return self._reduced_mlp(Vh, gens, slices, alive, False)


def _run_kernel(kernel, Vh, gens, slices, alive, *args, extra=()):
    """Run a sub-layer kernel of :mod:`finite.reduced_kernels` on a copy of Vh over the RNG
    blocks ``gens`` (a :class:`finite.streams.BlockStreams`, or Generators whose states are
    written back) holding the paths ``slices``; ``extra``: arguments after the kernel's
    outputs ``failed, clipped``. Returns ``(Vh', failed, n_clipped)``."""
    streams = gens if isinstance(gens, BlockStreams) else BlockStreams(gens)
    out = np.array(Vh, dtype=np.float64, order="C")
    p = out.shape[0]
    bounds = np.array([sl.start for sl in slices] + [slices[-1].stop], dtype=np.int64)
    failed = np.zeros(p, dtype=np.bool_)
    clipped = np.zeros(p, dtype=np.int64)
    kernel(streams.rows, bounds, out, *args, failed, clipped, *extra)
    if streams is not gens:
        streams.write_back()
    return out, failed, int(clipped[alive].sum())
