"""The fixed runs whose results must not move (see tests/test_fingerprints.py).

Each case is ``name -> (kind, model, kwargs)``; ``kind`` is ``"sde"`` (:func:`sde.simulate`)
or ``"finite"`` (:func:`finite.sample`). Models are built with the public constructors only.
"""
import hashlib

import numpy as np

import sde

V3 = sde.equicorrelated(3, 0.2)
V8 = sde.equicorrelated(8, 0.3)

MODELS = {
    "attention": sde.ShapedAttention(gamma=0.5, tau0=1.0),
    "attention-hot": sde.ShapedAttention(gamma=1.0, tau0=0.4),
    "attention-h2": sde.ShapedAttention(gamma=0.7, tau0=0.8, heads=2),
    "mlp-relu": sde.ShapedMLP(c_plus=0.5, c_minus=-1.5),
    "mlp-tanh": sde.ShapedMLP(activation="tanh", a=0.8),
    "mlp-res": sde.ShapedMLPResidual(gamma=0.6, c_plus=0.2, c_minus=-1.0),
    "block": sde.ShapedBlock(gamma=0.5, tau0=1.0, heads=2),
    "block-hot": sde.ShapedBlock(gamma=0.9, tau0=0.5, c_minus=-2.0),
}


def cases():
    out = {}
    for name, model in MODELS.items():
        for m, V0 in ((3, V3), (8, V8)):
            out[f"sde-{name}-m{m}"] = ("sde", model, dict(
                V0=V0, t_end=1.0, dt=0.02, n_paths=300, seed=20261201, save_every=5))
        out[f"ode-{name}"] = ("sde", model, dict(V0=V3, t_end=1.0, dt=0.01, seed=1,
                                                 method="ode"))
        for sampler in ("reduced", "literal"):
            out[f"finite-{sampler}-{name}"] = ("finite", model, dict(
                V0=V3, width=16, depth=8, n_paths=40, seed=99, sampler=sampler,
                save_every=2))
    out["finite-reduced-attention-nk"] = ("finite", MODELS["attention"], dict(
        V0=V3, width=16, depth=6, n_paths=40, seed=5, sampler="reduced", key_width=2))
    # unshaped networks: LayerNorm archs start from Haar-random frames (initial_x="haar"),
    # the others from the aligned frame (docs/theory.md §2.4f)
    from finite.unshaped import AttentionOnly, PostLN, Vanilla

    for name, model in (("post-ln", PostLN(mask="causal", heads=2)),
                        ("attention-only-ln", AttentionOnly(layernorm=True)),
                        ("attention-only", AttentionOnly(mask="causal")),
                        ("vanilla-u-spa", Vanilla(attention="u-spa"))):
        out[f"finite-literal-{name}"] = ("finite", model, dict(
            V0=V8, width=16, depth=4, n_paths=40, seed=7, sampler="literal", save_every=2))
    return out


def run(kind, model, kw):
    kw = dict(kw)
    V0 = kw.pop("V0")
    if kind == "sde":
        return sde.simulate(model, V0, **kw)
    import finite

    return finite.sample(model, V0, progress=False, threads=1, **kw)


def digest(ds, exact):
    """sha256 over V, status and death_time; V cast to float32 unless ``exact``."""
    h = hashlib.sha256()
    V = ds.V.values if exact else ds.V.values.astype(np.float32)
    for arr in (V, ds.status.values, ds.death_time.values):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:24]
