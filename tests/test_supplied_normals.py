"""Supplied normals run the PCG64 kernel's bits.

:func:`sde._kernels.integrate_normals` fed the unit normals the PCG64 stream of RNG block 0
draws (numpy's ``Generator.standard_normal``, laid out path by path as the lane kernel
consumes them: a path that dies stops drawing at its death step) reproduces
:func:`sde.simulate` bit for bit — V at every step, status and death time — complete and
masked, Euler and SPD, with deaths. Controls: the stream shifted by one draw, or another
seed's stream, does not. Brownian increments (the sdeint cross-check, coupled runs) go
through :func:`sde._kernels.increments_to_normals` to the same kernel (round-trip test).
"""
import math

import numpy as np
import pytest

import sde
from sde import _kernels as K
from sde.masks import row_lists
from sde.runs import block_generators

M, DT, N_STEPS, N_PATHS, SEED, BOUND = 3, 0.02, 50, 40, 7, 30.0
CASES = {  # name -> (method, model, dt)
    "euler-complete": ("euler", sde.ShapedAttention(1.0, 0.4), DT),
    "euler-causal": ("euler", sde.ShapedAttention(1.0, 0.4, mask="causal"), DT),
    "spd-complete": ("spd", sde.ShapedBlock(0.9, 0.5, heads=2), 0.1),
    "spd-sliding": ("spd", sde.ShapedAttention(1.0, 0.4, mask="sliding", window=1), 0.1),
}


def _rows(model):
    mask = model.attention_mask
    return None if mask.is_complete else row_lists(mask.matrix(M))


def stream_normals(gen, death, dt, n_steps, n_draw):
    """The stream's draws as (paths, n_steps, n_draw): path p takes the next ``s_p · n_draw``
    draws, s_p its death step (or n_steps); steps after a death are NaN (never read)."""
    out = np.full((death.size, n_steps, n_draw), np.nan)
    for p, t in enumerate(death):
        s = n_steps if math.isinf(t) else int(round(t / dt))
        out[p, :s] = gen.standard_normal((s, n_draw))
    return out


def _normals_run(method, model, dt, normals):
    out = np.full((normals.shape[0], normals.shape[1] + 1, M, M), np.nan)
    st = np.zeros(normals.shape[0], np.int8)
    de = np.full(normals.shape[0], np.inf)
    K.integrate_normals(sde.equicorrelated(M, 0.2), model.limit(), dt, normals, BOUND, out, st,
                        de, method=method, rows=_rows(model))
    return out, st, de


@pytest.mark.parametrize("name", sorted(CASES))
def test_supplied_normals_equal_pcg64_kernel(name):
    method, model, dt = CASES[name]
    ds = sde.simulate(model, sde.equicorrelated(M, 0.2), t_end=N_STEPS * dt, dt=dt,
                      n_paths=N_PATHS, seed=SEED, save_every=1, method=method, bound=BOUND)
    status, death = ds.status.values, ds.death_time.values
    assert np.any(status != 0) and np.any(status == 0)      # deaths and survivors
    if method == "spd":
        assert not np.any(status == 1)
    n_draw = K.normals_per_step(M, model.limit().att_noise != 0.0)
    normals = stream_normals(block_generators(SEED, N_PATHS)[0], death, dt, N_STEPS, n_draw)
    out, st, de = _normals_run(method, model, dt, normals)
    np.testing.assert_array_equal(out, ds.V.values)
    np.testing.assert_array_equal(st, status)
    np.testing.assert_array_equal(de, death)
    # controls: the stream one draw on, and another seed's stream, change the paths
    flat = normals.reshape(-1)
    ok = ~np.isnan(flat)
    shifted = flat.copy()
    shifted[np.flatnonzero(ok)[:-1]] = flat[np.flatnonzero(ok)[1:]]
    other = stream_normals(block_generators(SEED + 1, N_PATHS)[0], death, dt, N_STEPS, n_draw)
    for alt in (shifted.reshape(normals.shape), other):
        a, _, _ = _normals_run(method, model, dt, alt)
        assert not np.array_equal(a[:, 1], ds.V.values[:, 1])


def test_increments_to_normals_round_trip():
    """Increments G, G' (entries ~ N(0, dt)) become normals whose kernel scaling gives back
    Z = (G + Gᵀ)/sqrt 2 and G' to round-off; without attention noise G' is dropped."""
    rng = np.random.default_rng(5)
    m, dt = 4, 0.03
    dW = math.sqrt(dt) * rng.standard_normal((2, 3, 2, m, m))
    x = K.increments_to_normals(dW, dt, True)
    assert x.shape == (2, 3, K.normals_per_step(m, True))
    a, b = np.triu_indices(m)
    Z = (dW[:, :, 0] + np.swapaxes(dW[:, :, 0], -1, -2)) / math.sqrt(2.0)
    scale = np.where(a == b, math.sqrt(2.0) * math.sqrt(dt), math.sqrt(dt))
    np.testing.assert_allclose(x[..., :a.size] * scale, Z[..., a, b], rtol=1e-15, atol=0)
    np.testing.assert_allclose(x[..., a.size:] * math.sqrt(dt), dW[:, :, 1].reshape(2, 3, -1),
                               rtol=1e-15, atol=0)
    assert K.increments_to_normals(dW, dt, False).shape == (2, 3, m * (m + 1) // 2)
