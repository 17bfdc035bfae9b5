"""The initial frame of finite networks, ``initial_x`` haar / aligned (docs/theory.md §2.4f).

LayerNorm centres each token over its n features, which does not commute with rotations of
feature space, so a post-LN network's law depends on the frame E of X0 = √n L E at order 1/n;
networks of Gaussian weight products depend on V0 only.

Statistic: the mean off-diagonal token correlation ρ̄ at the last depth, per path; two
independent samples (haar, aligned) compared by the z-score of the difference of means
(two-sided, α = 1e-3 → |z| > 3.29) and a two-sample KS test.

* post-LN, causal mask, m = 8, n = 32, depth 1: the frames differ (z > 3.29 and KS rejects;
  expected z ≈ 7 at 2 000 paths each, measured z ≈ 10 at 4 000);
* the difference shrinks with width: ρ̄(haar) − ρ̄(aligned) at n = 64 is smaller than at n = 16,
  by more than 3.29 standard errors;
* attention-only without LN (reduced and literal laws depend on V0 only): both frames agree
  (|z| < 3.29, KS p > α) — the post-LN test is this family's negative control;
* defaults: haar for LayerNorm archs, aligned for the others; the choice is in the attrs.
* slow: m = 8, n = 32, causal, depth 2 at 8 000 paths each, and n = 32 → 128.
"""
import numpy as np
import pytest
import scipy.stats

import sde
from finite import sample
from finite.unshaped import AttentionOnly, PostLN, PreLN

ALPHA = 1e-3
Z = scipy.stats.norm.isf(ALPHA / 2)


def _rho_bar(ds):
    V = ds.V.values[:, -1]
    d = np.sqrt(np.einsum("pii->pi", V))
    R = V / d[:, :, None] / d[:, None, :]
    iu = np.triu_indices(V.shape[-1], 1)
    return R[:, iu[0], iu[1]].mean(axis=1)


def _pair(model, m, n, depth, paths, seed, **kw):
    a = _rho_bar(sample(model, np.eye(m), width=n, depth=depth, n_paths=paths, seed=seed,
                        initial_x="haar", progress=False, **kw))
    b = _rho_bar(sample(model, np.eye(m), width=n, depth=depth, n_paths=paths, seed=seed + 1,
                        initial_x="aligned", progress=False, **kw))
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return diff, se, scipy.stats.ks_2samp(a, b).pvalue


def test_post_ln_frames_differ():
    diff, se, p = _pair(PostLN(mask="causal"), 8, 32, 1, 2000, 40)
    assert diff / se > Z and p < ALPHA, (diff, se, p)


def test_post_ln_frames_converge_with_width():
    d16, s16, _ = _pair(PostLN(mask="causal"), 8, 16, 1, 2000, 50)
    d64, s64, _ = _pair(PostLN(mask="causal"), 8, 64, 1, 2000, 60)
    assert (d16 - d64) / np.hypot(s16, s64) > Z, (d16, s16, d64, s64)


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
def test_frames_agree_without_layernorm(sampler):
    diff, se, p = _pair(AttentionOnly(mask="causal"), 8, 16, 2, 2000, 70, sampler=sampler)
    assert abs(diff / se) < Z and p > ALPHA, (diff, se, p)


def test_defaults_and_attrs():
    kw = dict(width=16, depth=1, n_paths=2, seed=0, progress=False)
    assert sample(PostLN(), np.eye(3), **kw).attrs["initial_x"] == "haar"
    assert sample(PreLN(), np.eye(3), **kw).attrs["initial_x"] == "haar"
    assert sample(AttentionOnly(layernorm=True), np.eye(3), **kw).attrs["initial_x"] == "haar"
    assert sample(AttentionOnly(), np.eye(3), **kw).attrs["initial_x"] == "aligned"
    ds = sample(sde.ShapedBlock(0.5, 1.0), np.eye(3), **kw)
    assert ds.attrs["initial_x"] == "aligned"
    # haar frames keep V0 and every head block's Gram V0/H exactly
    ds = sample(PostLN(heads=2), sde.equicorrelated(3, 0.3), initial_x="haar", **kw)
    np.testing.assert_allclose(ds.V.values[:, 0], np.broadcast_to(sde.equicorrelated(3, 0.3),
                                                                  (2, 3, 3)), atol=1e-12)


def test_haar_frames_block_grams(rng):
    from finite import weight_init as wi

    E = wi.haar_frames(rng, 5, 4, 24, 3)
    for h in range(3):
        Eh = E[:, :, 8 * h:8 * (h + 1)]
        np.testing.assert_allclose(Eh @ np.swapaxes(Eh, -1, -2),
                                   np.broadcast_to(np.eye(4) / 3, (5, 4, 4)), atol=1e-13)


@pytest.mark.slow
def test_post_ln_frames_m8_n32_depth2_and_width_128():
    diff, se, p = _pair(PostLN(mask="causal"), 8, 32, 2, 8000, 80)
    assert diff / se > Z and p < ALPHA, (diff, se, p)
    d32, s32, _ = _pair(PostLN(mask="causal"), 8, 32, 1, 8000, 90)
    d128, s128, _ = _pair(PostLN(mask="causal"), 8, 128, 1, 8000, 100)
    assert (d32 - d128) / np.hypot(s32, s128) > Z, (d32, s32, d128, s128)
