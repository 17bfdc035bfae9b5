"""Width-first kernel maps: the deterministic n → ∞ limit of a network's covariance, where it
is exact (docs/theory.md §2.4: ``Σ_ℓ = A_ℓ Σ_{ℓ−1} A_ℓᵀ`` for attention-only stacks of
E-SPA/U-SPA, or Value-SkipInit with β = 0).

:func:`kernel_map` writes a one-path dataset of the schema (like the ODE), so that overlays
and comparisons read it as a point mass at each depth. A model any of whose layers has no exact
width-first map is refused with a one-line error.
"""
import time as _time

import numpy as np

from sde.runs import as_int, check_model, provenance, saved_steps
from sde.errors import CovsdeInputError
from sde.initial import validate_V0
from sde.schema import make_dataset

from . import layers
from .unshaped import layers as unshaped_layers  # noqa: F401  (registers their finite maps)


def kernel_map(model, V0, *, depth, width, save_every=None):
    """Σ_ℓ for ℓ = 0 … depth from Σ_0 = V0; dataset with one path, ``time = ℓ / width``.

    ``width`` only sets the time axis (so the map overlays finite runs at that width); the
    map itself does not depend on it.
    """
    check_model(model)
    V0 = validate_V0(V0)
    m = V0.shape[0]
    depth = as_int("depth", depth, 1)
    width = as_int("width", width, 1)
    steps = saved_steps(depth, save_every)
    bound = layers.bind(model, width, model.heads, width // model.heads, depth)
    for b in bound:
        b.prepare(m)
    t0 = _time.perf_counter()
    out = np.full((1, len(steps), m, m), np.nan)
    save_at = {int(s): j for j, s in enumerate(steps)}
    V = V0.copy()
    if 0 in save_at:
        out[0, save_at[0]] = V
    for layer in range(depth):
        for b in bound:
            V = b.kernel_step(V, layer)
            if V is None:
                raise CovsdeInputError(
                    f"arch {model.arch} has no exact width-first kernel map (a layer's "
                    f"attention matrix stays random in that limit, or LayerNorm is "
                    f"present): only E-SPA/U-SPA or Value-SkipInit with β = 0, attention-only "
                    f"or vanilla")
        if layer + 1 in save_at:
            out[0, save_at[layer + 1]] = V
    attrs = provenance("kernel-map", model, method="kernel-map", seed=0, dt=1.0 / width,
                       t_end=depth / width, n_steps=depth, steps=steps, V0=V0,
                       wall=_time.perf_counter() - t0, width=width, depth_layers=depth,
                       scheme="width-first kernel map Σ ← A Σ Aᵀ (deterministic)",
                       **{k: v for b in bound for k, v in b.run_attrs().items()})
    return make_dataset(out, np.zeros(1, dtype=np.int8), np.full(1, np.inf), steps,
                        1.0 / width, attrs, depth=steps)
