"""The masked lane kernels: the same bits as the per-path masked kernels, and SPD with a mask.

* The masked drift and noise on lanes (:mod:`sde._kernels.masked_lanes`) equal their
  per-path twins in :mod:`sde.masked_coefficients` bit for bit on NL random states.
* Masked lanes = the per-path masked kernel bit for bit (V, status, death time), Euler with
  deaths of both kinds, and SPD; the recorded masked fingerprints
  (tests/test_masked_fingerprints.py) pin both to the masked kernel as it was.
* Supplied increments, masked, run the PCG64 path's lane kernel: the stream's normals written
  as increments G, G' reproduce ``sde.simulate`` to round-off (the increments are turned back
  into unit normals, one rounding each way); fed as normals they give the same bits
  (tests/test_supplied_normals.py).
* SPD with a mask: the Itô correction equals the second moment of the whitened noise summed
  over a basis (exact); with a causal and a sliding mask no path leaves the PD cone and the
  law at T matches masked Euler at a fine step (two-sample KS, Bonferroni), while a
  τ0 × 1.2 control (and, for the causal mask, the complete mask) is rejected.
"""
import functools
import math

import numpy as np
import pytest
import scipy.stats

import sde
from conftest import random_spd
from sde import _kernels as K
from sde import masked_coefficients as masked
from sde._kernels.masked_lanes import (key_prefix_rows, masked_attention_drift_lanes,
                                       masked_noise_lanes)
from sde.coefficients import NL, drift_start_lanes
from sde.masks import row_lists
from test_lanes import run_kernel

MASKS = {
    "causal": dict(mask="causal"),
    "sliding": dict(mask="sliding", window=1),
    "sparse": dict(mask="sparse", sparse_k=1),
}


def lanes_of(mats):
    return np.ascontiguousarray(np.stack(mats, axis=-1))


@pytest.mark.parametrize("name", sorted(MASKS))
def test_masked_lane_formulas_equal_per_path(name, rng):
    m = 5
    model = sde.ShapedBlock(0.6, 0.9, 0.2, -1.0, heads=2, **MASKS[name])
    coef = model.limit()
    idx, cnt = row_lists(model.attention_mask.matrix(m, 3))
    Vs = [random_spd(rng, m, cond=20.0) for _ in range(NL)]
    Ls = [np.linalg.cholesky(V) for V in Vs]
    Zs = [(lambda G: (G + G.T) / np.sqrt(2.0))(rng.standard_normal((m, m))) * 0.1
          for _ in range(NL)]
    Gs = [rng.standard_normal((m, m)) * 0.1 for _ in range(NL)]
    V, L, Z, Gp = lanes_of(Vs), lanes_of(Ls), lanes_of(Zs), lanes_of(Gs)
    W = np.zeros((11, m, m, NL))
    b = np.empty((m, m, NL))
    assert coef.att_drift != 0.0                # the attention part is exercised
    drift_start_lanes(V, coef, b)               # the lane loop's composition of the drift
    masked_attention_drift_lanes(V, idx, cnt, key_prefix_rows(idx, cnt), coef.att_drift, b, W[0],
                                 W[1], W[2], W[3], W[4], W[5])
    out = np.empty((m, m, NL))
    masked_noise_lanes(L, V, Z, Gp, coef, idx, cnt, W[6], W[7], W[8], W[4], out)
    for l in range(NL):
        ref = np.empty((m, m))
        masked.masked_drift_work(Vs[l], coef, idx, cnt, ref, np.empty((5, m, m)))
        np.testing.assert_array_equal(b[..., l], ref)
        masked.masked_noise_into(Ls[l], Vs[l], Zs[l], Gs[l], coef, idx, cnt, np.empty((3, m, m)),
                                 ref)
        np.testing.assert_array_equal(out[..., l], ref)


@pytest.mark.parametrize("method,name,dt", [("euler", "causal", 0.02), ("euler", "sliding", 0.02),
                                            ("spd", "causal", 0.1)])
def test_masked_lanes_equal_per_path(method, name, dt):
    """Hot attention (deaths), partial blocks and idle lanes; m = 3."""
    model = sde.ShapedAttention(1.0, 0.4, **MASKS[name])
    rows = row_lists(model.attention_mask.matrix(3))
    V0 = sde.equicorrelated(3, 0.2)
    args = (model, V0, 2 * 256 + 37, 5, 1.0, dt)
    a = run_kernel(functools.partial(K.simulate_blocks, method=method, rows=rows), *args,
                   bound=30.0)
    b = run_kernel(functools.partial(K.simulate_blocks_per_path, method=method, rows=rows),
                   *args, bound=30.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    if method == "euler":
        assert np.any(a[1] == 1) and np.any(a[1] == 2)
    else:
        assert not np.any(a[1] == 1) and np.any(a[1] == 2)


def _replay(gen, n_paths, n_steps, dt, m):
    """The PCG64 path's draws (package order) as supplied increments G (upper triangular,
    Z = (G + Gᵀ)/sqrt 2) and G'."""
    sq = math.sqrt(dt)
    dW = np.zeros((n_paths, n_steps, 2, m, m))
    for p in range(n_paths):
        for s in range(n_steps):
            for a in range(m):
                dW[p, s, 0, a, a] = sq * gen.standard_normal()
                for b in range(a + 1, m):
                    dW[p, s, 0, a, b] = math.sqrt(2.0) * sq * gen.standard_normal()
            for a in range(m):
                for b in range(m):
                    dW[p, s, 1, a, b] = sq * gen.standard_normal()
    return dW


@pytest.mark.parametrize("method", ["euler", "spd"])
def test_supplied_masked_equals_pcg64_path(method):
    from sde.runs import block_generators

    m, n_paths, n_steps, dt, seed = 3, 4, 30, 0.02, 99
    model = sde.ShapedBlock(0.5, 1.0, heads=2, mask="causal")
    V0 = sde.equicorrelated(m, 0.2)
    ds = sde.simulate(model, V0, t_end=n_steps * dt, dt=dt, n_paths=n_paths, seed=seed,
                      save_every=1, method=method)
    assert np.all(ds.status.values == 0)
    dW = _replay(block_generators(seed, n_paths)[0], n_paths, n_steps, dt, m)
    out = np.full((n_paths, n_steps + 1, m, m), np.nan)
    st = np.zeros(n_paths, np.int8)
    K.integrate_supplied(V0, model.limit(), dt, dW, 1e4, out, st, np.full(n_paths, np.inf),
                         method=method, rows=row_lists(model.attention_mask.matrix(m)))
    scale = np.max(np.abs(out))
    assert np.max(np.abs(ds.V.values - out)) / scale < 1e-12
    # control: the complete mask's kernel on the same increments is far off
    K.integrate_supplied(V0, model.limit(), dt, dW, 1e4, out, st, np.full(n_paths, np.inf),
                         method=method)
    assert np.max(np.abs(ds.V.values - out)) / scale > 1e-3


@pytest.mark.parametrize("name", sorted(MASKS))
def test_masked_ito_correction_is_second_moment(name, rng):
    """C = Σ over the basis of (Z, G') of N², N the masked whitened noise (exact identity:
    the increments' entries are independent with unit variance per unit Δt); a perturbed
    attention coefficient misses it."""
    m = 4
    model = sde.ShapedAttention(0.7, 0.8, **MASKS[name])
    coef = model.limit()
    idx, cnt = row_lists(model.attention_mask.matrix(m, 3))
    L = np.linalg.cholesky(random_spd(rng, m, cond=10.0))
    C = np.empty((m, m))
    masked.masked_ito_correction_into(L, coef, idx, cnt, C, np.empty((12, m, m)))
    S = np.zeros((m, m))
    N = np.empty((m, m))
    zero = np.zeros((m, m))
    for k in range(m * m):
        E = np.zeros((m, m))
        E.flat[k] = 1.0
        for Z, G in (((E + E.T) / math.sqrt(2.0), zero), (zero, E)):
            masked.masked_whitened_noise_into(L, Z, G, coef, idx, cnt, np.empty((3, m, m)), N)
            S += N @ N
    np.testing.assert_allclose(C, S, rtol=1e-12, atol=1e-12 * np.abs(S).max())
    wrong = model.replace(tau0=0.9 * model.tau0).limit()
    masked.masked_ito_correction_into(L, wrong, idx, cnt, C, np.empty((12, m, m)))
    assert np.abs(C - S).max() > 1e-3 * np.abs(S).max()


# ------------------------------------------------------------------ the law of masked SPD

ALPHA = 0.01
LAW_V0 = sde.equicorrelated(3, -0.3)
N_STATS = 2 * 3   # two masks, three statistics each


def stopped_state(model, dt, n, seed, method):
    """ρ01, V00 and V22 at T = 1, a dead path counted as +∞; and the status counts."""
    ds = sde.simulate(model, LAW_V0, t_end=1.0, dt=dt, n_paths=n, seed=seed, method=method,
                      save_every=10 ** 9, progress=False)
    V = ds.V.values[:, -1]
    dead = ds.status.values != 0
    rho = V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])
    out = (rho, V[:, 0, 0].copy(), V[:, 2, 2].copy())
    for x in out:
        x[dead] = np.inf
    return out, np.bincount(ds.status.values, minlength=3)


def ks_rejects(sample, reference):
    stats = []
    for a, b in zip(sample, reference):
        d = scipy.stats.ks_2samp(a, b).statistic
        crit = (scipy.stats.kstwobign.ppf(1.0 - ALPHA / N_STATS)
                * math.sqrt((len(a) + len(b)) / (len(a) * len(b))))
        stats.append((round(d, 4), round(crit, 4)))
    return any(d > c for d, c in stats), stats


@pytest.mark.parametrize("name", ["causal", "sliding"])
def test_masked_spd_law_matches_fine_masked_euler(name):
    """SPD at dt = 0.02 (40 000 paths) vs masked Euler at dt = 5e-3 (20 000 paths): not
    rejected, and no status 1; τ0 × 1.2 is rejected (for the causal mask the complete mask
    too). Critical value ≈ 0.0163 (6 statistics, α = 0.01); measured: SPD 0.008–0.013,
    τ0 × 1.2 0.019–0.028, the complete mask against causal 0.027–0.046 (against sliding
    w = 1 at m = 3 only 0.010–0.016: too close to complete to be a control)."""
    model = sde.ShapedAttention(gamma=0.5, tau0=1.0, **MASKS[name])
    ref, _ = stopped_state(model, 5e-3, 20_000, 101, "euler")
    spd, counts = stopped_state(model, 0.02, 40_000, 102, "spd")
    assert counts[1] == 0
    rejected, stats = ks_rejects(spd, ref)
    assert not rejected, stats
    controls = [model.replace(tau0=1.2)]
    if name == "causal":
        controls.append(sde.ShapedAttention(gamma=0.5, tau0=1.0))
    for ctl in controls:
        rejected, stats = ks_rejects(stopped_state(ctl, 0.02, 40_000, 102, "spd")[0], ref)
        assert rejected, (ctl, stats)


@pytest.mark.parametrize("mk", [dict(mask="causal"), dict(mask="sliding", window=1),
                                dict(mask="causal-sliding", window=1),
                                dict(mask="sparse", sparse_k=1),
                                dict(mask=np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]]))],
                         ids=["causal", "sliding", "causal-sliding", "sparse", "explicit"])
def test_spd_runs_with_every_mask(mk):
    """``method="spd"`` with every mask kind, hot attention at a coarse step where masked
    Euler loses paths out of the cone: no status 1 (Euler, same increments: some)."""
    model = sde.ShapedAttention(1.0, 0.4, **mk)
    kw = dict(t_end=1.0, dt=0.05, n_paths=400, seed=4, save_every=10 ** 9)
    spd = sde.simulate(model, sde.equicorrelated(3, 0.2), method="spd", **kw)
    em = sde.simulate(model, sde.equicorrelated(3, 0.2), **kw)
    assert not np.any(spd.status.values == 1)
    assert np.any(em.status.values == 1)
    assert spd.attrs["method"] == "spd"
