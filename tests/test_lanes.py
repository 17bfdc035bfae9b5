"""The lane kernel (Euler–Maruyama on NL paths at once) is bit-identical to the per-path one.

* Each lane-wise formula in :mod:`sde.coefficients` (drift, noise, Cholesky) equals its
  scalar twin bit for bit on NL random states (and the Cholesky failure flag agrees).
* :func:`sde._kernels.simulate_blocks` (lanes) and ``simulate_blocks_per_path`` give identical
  V, status and death times for every architecture, including a hot regime with deaths of
  both kinds and partial blocks (tests/test_fingerprints.py pins today's results).
"""
import numpy as np
import pytest

import sde
from conftest import random_spd
from sde import _kernels as K
from sde import coefficients as C
from sde.runs import RNG_BLOCK, block_generators, kernel_chunks

MODELS = {
    "attention-h2": sde.ShapedAttention(0.7, 0.8, heads=2),
    "mlp-relu": sde.ShapedMLP(0.5, -1.5),
    "mlp-tanh": sde.ShapedMLP(activation="tanh", a=0.8),
    "block": sde.ShapedBlock(0.5, 1.0, 0.1, -1.1),
}


def lanes_of(mats):
    return np.ascontiguousarray(np.stack(mats, axis=-1))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("m", [2, 3, 5])
def test_lane_formulas_equal_scalar(name, m, rng):
    coef = MODELS[name].limit()
    Vs = [random_spd(rng, m, cond=20.0) for _ in range(C.NL)]
    Ls = [np.linalg.cholesky(V) for V in Vs]
    Zs = [(lambda G: (G + G.T) / np.sqrt(2.0))(rng.standard_normal((m, m))) * 0.1
          for _ in range(C.NL)]
    Gs = [rng.standard_normal((m, m)) * 0.1 for _ in range(C.NL)]
    V, L, Z, Gp = lanes_of(Vs), lanes_of(Ls), lanes_of(Zs), lanes_of(Gs)
    vec, sc = np.zeros((4, m, C.NL)), np.zeros((4, C.NL))
    b = np.empty((m, m, C.NL))
    C.drift_start_lanes(V, coef, b)            # the lane loop's composition of the drift
    if coef.att_drift != 0.0:
        C.attention_drift_lanes(V, coef.att_drift, b, vec, sc)
    N, T, Kw, out = (np.empty((m, m, C.NL)) for _ in range(4))
    C.whitened_noise_lanes(L, Z, Gp, coef, N, T, Kw, vec[3])   # the Euler loop's noise
    C.sandwich_lanes(L, N, T, out)
    Lo, ok = np.empty((m, m, C.NL)), np.empty(C.NL, dtype=bool)
    C.cholesky_lanes(V, Lo, ok)
    for l in range(C.NL):
        np.testing.assert_array_equal(b[..., l], C.drift(Vs[l], coef))
        ref = np.empty((m, m))
        C.noise_into(Ls[l], Zs[l], Gs[l], coef, np.empty((3, m, m)), ref)
        np.testing.assert_array_equal(out[..., l], ref)
        Lr = np.empty((m, m))
        assert C.cholesky_into(Vs[l], Lr) and ok[l]
        np.testing.assert_array_equal(Lo[..., l], Lr)
    # a non-PD lane is flagged, the others are not
    V[..., 3] = -V[..., 3]
    C.cholesky_lanes(V, Lo, ok)
    assert not ok[3] and ok[[0, 1, 2, 4, 5, 6, 7]].all()


def run_kernel(kernel, model, V0, n_paths, seed, t_end, dt, bound=1e4, save_every=3):
    n_steps = int(round(t_end / dt))
    steps = np.arange(0, n_steps + 1, save_every)
    if steps[-1] != n_steps:
        steps = np.append(steps, n_steps)
    m = V0.shape[0]
    out = np.full((n_paths, len(steps), m, m), np.nan)
    st = np.zeros(n_paths, dtype=np.int8)
    death = np.full(n_paths, np.inf)
    # padded to KERNEL_BLOCKS Generators, as sde.simulate does (one numba specialisation)
    (gens, starts, lens, _, _), = kernel_chunks(block_generators(seed, n_paths), n_paths)
    kernel(gens, starts, lens, V0, model.limit(), dt, n_steps, steps, bound, out, st, death)
    return out, st, death


# m = 2, 3, 8 are compiled by the rest of the default suite anyway (fingerprints: 3, 8; the
# Li–Nica–Roy m = 2 tests); each further m costs a ≈ 25 s cold compile, so m = 4 runs in -m slow
@pytest.mark.parametrize("name,m,kw", [
    ("attention-h2", 3, {}), ("mlp-relu", 3, {}), ("mlp-tanh", 2, {}),
    pytest.param("mlp-tanh", 4, {}, marks=pytest.mark.slow), ("block", 8, {}),
    ("hot", 3, {"bound": 30.0}),
])
def test_lane_kernel_bit_identical(name, m, kw):
    model = MODELS.get(name) or sde.ShapedAttention(1.0, 0.4)
    V0 = sde.equicorrelated(m, 0.2)
    n = 2 * RNG_BLOCK + 37 if name != "block" else 300   # partial blocks, idle lanes
    args = (model, V0, n, 5, 1.0, 0.02)
    a = run_kernel(K.simulate_blocks, *args, **kw)
    b = run_kernel(K.simulate_blocks_per_path, *args, **kw)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    if name == "hot":
        assert np.any(a[1] == 1) and np.any(a[1] == 2)
