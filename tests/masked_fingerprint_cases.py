"""Masked runs whose results must not move (see tests/test_masked_fingerprints.py).

The masked kernels (Euler–Maruyama, RK4, and Euler driven by supplied increments) at
m = 3, 8 and 16 for every mask kind, on attention-bearing models with and without deaths.
Built with the public constructors; hashed as :func:`fingerprint_cases.digest` (exact).
"""
import numpy as np

import sde
from fingerprint_cases import V3, V8

V16 = sde.equicorrelated(16, 0.25)

MASKS = {
    "causal": dict(mask="causal"),
    "sliding": dict(mask="sliding", window=1),
    "causal-sliding": dict(mask="causal-sliding", window=2),
    "sparse": dict(mask="sparse", sparse_k=1),
}

MODELS = {
    "attention": lambda mk: sde.ShapedAttention(gamma=0.5, tau0=1.0, **mk),
    "attention-hot": lambda mk: sde.ShapedAttention(gamma=1.0, tau0=0.4, **mk),
    "block-h2": lambda mk: sde.ShapedBlock(gamma=0.7, tau0=0.8, heads=2, **mk),
}


def cases():
    """name -> (model, kwargs of :func:`sde.simulate` with ``V0``)."""
    out = {}
    for mname, mk in MASKS.items():
        for name, make in MODELS.items():
            model = make(mk)
            for m, V0 in ((3, V3), (8, V8)):
                out[f"euler-{name}-{mname}-m{m}"] = (model, dict(
                    V0=V0, t_end=1.0, dt=0.02, n_paths=150, seed=20261206, save_every=5))
            out[f"ode-{name}-{mname}"] = (model, dict(V0=V3, t_end=1.0, dt=0.01, seed=1,
                                                      method="ode"))
        model = MODELS["attention"](mk)
        out[f"euler-attention-{mname}-m16"] = (model, dict(
            V0=V16, t_end=0.5, dt=0.02, n_paths=40, seed=3, save_every=5))
    return out


def supplied_increments(m, n_paths=24, n_steps=40, dt=0.025, seed=11):
    """Fixed G, G' increments (paths, steps, 2, m, m), entries ~ N(0, dt)."""
    rng = np.random.default_rng(seed)
    return dt, np.sqrt(dt) * rng.standard_normal((n_paths, n_steps, 2, m, m))
