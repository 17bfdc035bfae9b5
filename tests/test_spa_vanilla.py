"""He et al.'s vanilla E-SPA/U-SPA blocks as a whole (docs/theory.md §2.4g).

* κ_s, the leaky-ReLU kernel map: κ_1(ρ) = ρ, κ_0 the ReLU arc-cosine kernel, and κ_0.3 against
  a Monte-Carlo estimate (z-scores, Bonferroni over the ρ grid); the kernel of slope 0.36 (20 %
  off) is rejected by the same statistic (control).
* the vanilla stack's width-first kernel map (attention aiming at the MLP's pre-image, shaped
  slope) stays within SCHEDULE_TOL of the schedule at every depth; attention-only targets
  followed by the same MLP, or by a ReLU MLP, leave it (controls).
* E-SPA's default γ_L gives a target with mean token correlation 0.8 at the run's m.
* the resolved slope and end value are in the attrs; ``--sampler kernel-map`` runs vanilla.
"""
import numpy as np
import pytest
import scipy.stats

from finite import sample, spa
from finite import spa_vanilla as sv
from finite.kernel_map import kernel_map
from finite.unshaped import Vanilla
from compare.collapse import token_similarity

ALPHA = 1e-3


def test_kernel_limits():
    rho = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(sv.leaky_relu_kernel(rho, 1.0), rho, atol=1e-15)
    arc = (np.sqrt(1 - rho ** 2) + (np.pi - np.arccos(rho)) * rho) / np.pi
    np.testing.assert_allclose(sv.leaky_relu_kernel(rho, 0.0), arc, atol=1e-15)
    r = sv.leaky_relu_kernel(rho, 0.4)
    np.testing.assert_allclose(sv.inverse_kernel(r, 0.4), rho, atol=1e-12)


def test_kernel_monte_carlo():
    rng = np.random.default_rng(5)
    rhos = np.array([-0.5, 0.0, 0.4, 0.8])
    N = 400_000
    z_crit = scipy.stats.norm.isf(ALPHA / (2 * len(rhos)))

    def zs(s_model):
        out = []
        for r in rhos:
            u = rng.standard_normal(N)
            v = r * u + np.sqrt(1 - r * r) * rng.standard_normal(N)
            phi = lambda x: np.maximum(x, 0) + 0.3 * np.minimum(x, 0)   # noqa: E731
            y = phi(u) * phi(v) * 2.0 / (1 + 0.3 ** 2)
            out.append((y.mean() - sv.leaky_relu_kernel(r, s_model)) / (y.std() / np.sqrt(N)))
        return np.abs(out)

    assert np.all(zs(0.3) < z_crit)
    assert np.any(zs(0.36) > z_crit)


@pytest.mark.parametrize("kind", ["e-spa", "u-spa"])
@pytest.mark.parametrize("m,depth", [(8, 6), (16, 16)])
def test_vanilla_kernel_map_keeps_the_schedule(kind, m, depth):
    final = sv.default_final(kind, m)
    s = sv.shaped_slope(kind, final, m, depth)
    assert 0.0 < s < 1.0
    S = spa.kernel_schedule(kind, final, m, depth)
    K = sv.kernel_map(kind, final, m, depth, s)
    assert np.abs(K - S).max() <= sv.SCHEDULE_TOL + 1e-12
    # controls: the attention-only schedule followed by the shaped MLP, or by a ReLU MLP
    for slope in (s, 0.0):
        Kc = [np.eye(m)]
        for a in spa.attention_matrices(kind, final, m, depth):
            Kc.append(sv.mlp_map(a @ Kc[-1] @ a.T, slope))
        assert np.abs(np.stack(Kc) - S).max() > 2 * sv.SCHEDULE_TOL
    # the model's width-first map is the same map
    km = kernel_map(Vanilla(attention=kind), np.eye(m), depth=depth, width=64)
    np.testing.assert_allclose(km.V.values[0], K, atol=1e-12)
    assert km.attrs["mlp_slope_used"] == pytest.approx(s)


@pytest.mark.parametrize("m", [8, 16, 64])
def test_espa_default_final(m):
    g = sv.default_final("e-spa", m)
    S = spa.kernel_schedule("e-spa", g, m, 4)[-1]
    assert token_similarity(S) == pytest.approx(sv.TARGET_SIMILARITY, abs=1e-9)
    assert sv.default_final("u-spa", m) == 0.8


def test_vanilla_attrs_and_explicit_slope():
    ds = sample(Vanilla(attention="u-spa"), np.eye(6), width=32, depth=6, n_paths=4, seed=1,
                progress=False)
    assert ds.attrs["spa_final_used"] == 0.8
    assert 0 < ds.attrs["mlp_slope_used"] < 1
    assert ds.attrs["schedule_error"] <= sv.SCHEDULE_TOL
    ds = sample(Vanilla(attention="e-spa", mlp_slope=0.95), np.eye(6), width=32, depth=6,
                n_paths=4, seed=1, progress=False)
    assert ds.attrs["mlp_slope_used"] == 0.95
    assert ds.attrs["spa_final_used"] == pytest.approx(sv.default_final("e-spa", 6))
    from sde import CovsdeInputError

    with pytest.raises(CovsdeInputError, match="mlp_slope = 0 is too far from 1"):
        sample(Vanilla(attention="u-spa", mlp_slope=0.0), np.eye(16), width=32, depth=16,
               n_paths=2, seed=1)
    ds = sample(Vanilla(attention="u-spa", mlp_slope=0.0), np.eye(6), width=32, depth=6,
                n_paths=2, seed=1, progress=False)
    assert ds.attrs["schedule_error"] > 0.1          # a ReLU MLP leaves the schedule
    # the softmax vanilla block keeps the plain ReLU default
    ds = sample(Vanilla(), np.eye(4), width=16, depth=2, n_paths=2, seed=1, progress=False)
    assert ds.attrs["mlp_slope_used"] == 0.0
