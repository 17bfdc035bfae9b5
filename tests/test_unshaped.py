"""Unshaped Transformers and the rank-collapse papers' variants (docs/theory.md §2.4).

Each family checks a claim that can fail, sized from its sample, with a negative control:

* LayerNorm: V_aa = 1 exactly after a post-LN block / an LN'd attention-only layer; without
  LN the diagonal moves (control).
* E-SPA / U-SPA: A_ℓ ≥ 0 entrywise, E-SPA's diagonal constant in ℓ (after its first entry,
  which is always 1); the finite attention-only stack's mean V_ℓ equals the target Σ_ℓ at every
  depth (E[V'|V] = A V Aᵀ exactly) — z-scores, Bonferroni; a wrong schedule (final × 1.5 for
  E-SPA, 1 − ρ_L × 1.5 for U-SPA) is rejected by the same statistic. The width-first kernel
  map equals the schedule to round-off.
* Attention-only, complete mask: log μ(X)/‖X‖ decays linearly in depth (per-path slopes, 95 %
  interval of their mean excludes 0).
* Post-LN (m = 16, n = 64): the median token similarity exceeds 0.9 at depth 8; there, shaped
  attention stays below 0.9, and post-LN with similarity removal θ = 1 stays below the bound
  B_8 = 0.648 derived in docs/theory.md §2.4 (width-first similarity of the block with its
  attention branch removed: ρ ← (ρ + κ(ρ))/2 per layer, κ the ReLU arc-cosine kernel; with
  θ = 1 the attention adds a token-centred component, which cannot raise ρ̄ at infinite width
  when its diagonal is even). Measured when written: θ = 0 → 0.982, θ = 1 → 0.586, shaped
  attention → −0.005.
* Bad input: one line, exit 2, no file.
"""
import math

import numpy as np
import pytest
import scipy.stats

import sde
from finite import sample, spa
from finite.kernel_map import kernel_map
from finite.unshaped import (AttentionOnly, LayerNorm, PostLN, PreLN, PreNorm, ReLUMLP,
                             Residual, SoftmaxAttention, Vanilla)
from sde import CovsdeInputError

ALPHA = 1e-3
#: the finite-only types these tests exercise (tests/test_layer_family.py requires every
#: registered finite-only type to be here)
COVERED = {AttentionOnly, PostLN, PreLN, Vanilla, SoftmaxAttention, ReLUMLP, LayerNorm,
           Residual, PreNorm}


def token_similarity(V):
    d = np.sqrt(np.einsum("...ii->...i", V))
    R = V / d[..., :, None] / d[..., None, :]
    iu = np.triu_indices(V.shape[-1], 1)
    return R[..., iu[0], iu[1]].mean(axis=-1)


def mu_ratio(V):
    m = V.shape[-1]
    P = np.eye(m) - 1.0 / m
    num = np.einsum("...ii", P @ V @ P)
    return np.sqrt(np.clip(num, 0.0, None) / np.einsum("...ii", V))


# ---------------------------------------------------------------- LayerNorm

@pytest.mark.parametrize("model", [PostLN(), AttentionOnly(layernorm=True)],
                         ids=["post-ln", "attention-only+ln"])
def test_layernorm_gives_unit_diagonal(model):
    ds = sample(model, sde.equicorrelated(6, 0.2) * 2.5, width=48, depth=4, n_paths=30,
                seed=3, save_every=1)
    d = np.einsum("...ii->...i", ds.V.values[:, 1:])
    np.testing.assert_allclose(d, 1.0, rtol=0, atol=1e-12)


def test_layernorm_control_without_ln_the_diagonal_moves():
    ds = sample(AttentionOnly(), sde.equicorrelated(6, 0.2) * 2.5, width=48, depth=4,
                n_paths=30, seed=3, save_every=1)
    d = np.einsum("...ii->...i", ds.V.values[:, 1:])
    assert np.abs(d - 1.0).max() > 1e-3


# ---------------------------------------------------------------- E-SPA / U-SPA

def test_spa_matrices_nonnegative_and_espa_diagonal_constant():
    for kind, final in (("e-spa", 0.005), ("u-spa", 0.8)):
        A = spa.attention_matrices(kind, final, 7, 12)
        assert A.min() >= -1e-14, kind
        np.testing.assert_allclose(np.triu(A, 1), 0.0, atol=1e-15)   # causal
    dE = np.diagonal(spa.attention_matrices("e-spa", 0.005, 7, 12), axis1=1, axis2=2)
    assert np.ptp(dE[:, 1:]) < 1e-12 and np.all(dE[:, 0] == 1.0)
    # control: the same check sees U-SPA's diagonal change with ℓ
    dU = np.diagonal(spa.attention_matrices("u-spa", 0.8, 7, 12), axis1=1, axis2=2)
    assert np.ptp(dU[:, 1:]) > 1e-3


def _spa_z(ds, kind, final):
    """z-scores of the mean V_ℓ against the schedule's Σ_ℓ, all saved depths, a ≤ b."""
    V = ds.V.values                                          # (paths, saved, m, m)
    S = spa.kernel_schedule(kind, final, V.shape[-1], int(ds.attrs["depth_layers"]))
    S = S[ds.depth.values]
    iu = np.triu_indices(V.shape[-1])
    X = V[:, 1:, iu[0], iu[1]]                               # depth 0 is exact
    se = X.std(axis=0, ddof=1) / math.sqrt(len(X))
    return (X.mean(axis=0) - S[1:, iu[0], iu[1]]) / se


@pytest.mark.parametrize("kind,final,wrong", [("e-spa", 0.005, 0.0075),
                                              ("u-spa", 0.8, 1 - 0.2 * 1.5)])
def test_spa_stack_mean_equals_target_kernel(kind, final, wrong):
    """m = 6, n = 32, depth 8, 8000 paths, every layer saved: 8 × 21 = 168 z-scores against
    the Bonferroni bound z(168) = 4.3. The wrong schedule must give max |z| above it; measured
    when written: see the assertion messages."""
    ds = sample(AttentionOnly(attention=kind, spa_final=final), np.eye(6), width=32, depth=8,
                n_paths=8000, seed=11, save_every=1)
    zc = scipy.stats.norm.isf(ALPHA / (2 * 168))
    z = _spa_z(ds, kind, final)
    assert np.abs(z).max() < zc, f"{kind}: mean V_ℓ ≠ Σ_ℓ, max |z| = {np.abs(z).max():.2f}"
    z_bad = _spa_z(ds, kind, wrong)
    assert np.abs(z_bad).max() > zc, f"{kind}: wrong schedule not rejected " \
                                     f"(max |z| = {np.abs(z_bad).max():.2f})"


def test_kernel_map_equals_schedule_and_is_a_point_mass():
    ds = kernel_map(AttentionOnly(attention="u-spa", spa_final=0.7), np.eye(5), depth=10,
                    width=64)
    S = spa.kernel_schedule("u-spa", 0.7, 5, 10)
    np.testing.assert_allclose(ds.V.values[0], S[ds.depth.values], atol=1e-13)
    assert ds.sizes["path"] == 1 and ds.attrs["source"] == "kernel-map"
    with pytest.raises(CovsdeInputError, match="no exact width-first kernel map"):
        kernel_map(AttentionOnly(), np.eye(5), depth=3, width=8)
    with pytest.raises(CovsdeInputError, match="no exact width-first kernel map"):
        kernel_map(AttentionOnly(attention="e-spa", layernorm=True), np.eye(5), depth=3,
                   width=8)


# ---------------------------------------------------------------- rank collapse

def test_attention_only_collapse_rate():
    """log μ/‖X‖ falls linearly over depths 0–2 (m = 8, n = 64; at depth 3 some paths already
    reach the round-off floor, μ = 0): per-path least-squares slopes, their mean with a 95 % interval that
    excludes 0. Control: the same statistic on shaped attention (which does not collapse)
    has an interval containing slopes near 0 (|mean| < 0.05 per layer)."""
    def slopes(model):
        ds = sample(model, sde.equicorrelated(8, 0.3), width=64, depth=2, n_paths=300,
                    seed=5, save_every=1)
        y = np.log(mu_ratio(ds.V.values))                      # (paths, 3)
        x = ds.depth.values.astype(float)
        xc = x - x.mean()
        return (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)

    s = slopes(AttentionOnly())
    half = 1.96 * s.std(ddof=1) / math.sqrt(len(s))
    assert s.mean() + half < 0, f"no decay: {s.mean():.3f} ± {half:.3f}"
    c = slopes(sde.ShapedAttention(0.5, 1.0))
    assert abs(c.mean()) < 0.05 and abs(c.mean()) < abs(s.mean()) / 10


def _slopes(model, m=8, depth=2, paths=300):
    ds = sample(model, sde.equicorrelated(m, 0.3), width=64, depth=depth, n_paths=paths,
                seed=5, save_every=1)
    y = np.log(mu_ratio(ds.V.values))
    x = ds.depth.values.astype(float)
    xc = x - x.mean()
    s = (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return s.mean(), 1.96 * s.std(ddof=1) / math.sqrt(len(s))


def test_sliding_window_collapses_more_slowly():
    """Wu et al.: a local (sliding, w = 1) mask slows the collapse of attention-only stacks.
    Per-path slopes of log μ/‖X‖ over depths 0–2 (m = 8, n = 64, 300 paths): the 95 %
    intervals of the mean slope are disjoint, the sliding one closer to 0. Measured when
    written (per layer): complete −2.49 ± 0.04, causal −0.54 ± 0.01, sliding −0.225 ± 0.006."""
    full, hf = _slopes(AttentionOnly())
    slide, hs = _slopes(AttentionOnly(mask="sliding", window=1))
    assert slide - hs > full + hf, f"complete {full:.3f}±{hf:.3f}, sliding {slide:.3f}±{hs:.3f}"
    assert slide + hs < 0, "the sliding window still collapses (slope < 0)"


def test_masked_entries_of_attention_are_exactly_zero():
    from finite.layers import bind

    rng = np.random.default_rng(0)
    m, n = 6, 32
    X = rng.standard_normal((3, m, n))
    W = [rng.standard_normal((3, n, n))[0] for _ in range(3)]
    for mask, kw in (("causal", {}), ("sliding", {"window": 1}), ("sparse", {"sparse_k": 2})):
        (layer,) = bind(AttentionOnly(mask=mask, **kw), n, 1, n, depth=1, seed=4)
        layer.prepare(m)
        A = layer.attention_matrix(X, W, 0)
        M = layer.mask_matrix(m)
        assert np.all(A[..., M == 0] == 0.0) and np.all(A[..., M == 1] > 0.0), mask
        np.testing.assert_allclose(A.sum(axis=-1), 1.0, rtol=1e-14)
    (full,) = bind(AttentionOnly(), n, 1, n, depth=1, seed=4)
    assert np.all(full.attention_matrix(X, W, 0) > 0.0)           # control: nothing masked


def test_mask_changes_the_output_law():
    """One attention-only layer (m = 4, n = 32, 4000 paths): causal vs complete differ (KS on
    V_01 and V_33, p < 1e-6 asserted; the last token sees all keys either way, the first only
    itself under the causal mask), while two seeds of the same mask agree (p > 1e-3)."""
    V0 = sde.equicorrelated(4, 0.3)
    kw = dict(width=32, depth=1, n_paths=4000)

    def stat(ds):
        V = ds.V.values[:, -1]
        return V[:, 0, 1], V[:, 0, 0]

    a = stat(sample(AttentionOnly(mask="causal"), V0, seed=1, **kw))
    b = stat(sample(AttentionOnly(mask="causal"), V0, seed=2, **kw))
    c = stat(sample(AttentionOnly(), V0, seed=3, **kw))
    same = min(scipy.stats.ks_2samp(x, y).pvalue for x, y in zip(a, b))
    diff = min(scipy.stats.ks_2samp(x, y).pvalue for x, y in zip(a, c))
    assert same > 1e-3 and diff < 1e-6, (same, diff)


def test_post_ln_similarity_escalation_and_cures():
    V0 = np.eye(16)
    kw = dict(width=64, depth=8, n_paths=100, seed=2)
    post = np.median(token_similarity(sample(PostLN(), V0, **kw).V.values[:, -1]))
    removed = np.median(token_similarity(
        sample(PostLN(similarity_removal=1.0), V0, **kw).V.values[:, -1]))
    shaped = np.median(token_similarity(
        sample(sde.ShapedAttention(0.5, 1.0), V0, **kw).V.values[:, -1]))
    kappa = lambda r: (math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / math.pi  # noqa: E731
    bound = 0.0
    for _ in range(8):
        bound = (bound + kappa(bound)) / 2
    assert post > 0.9, f"post-LN similarity at depth 8: {post:.3f}"
    assert shaped < 0.9, f"shaped attention: {shaped:.3f}"
    assert removed < bound, f"θ = 1: {removed:.3f} ≥ bound {bound:.3f}"


# ---------------------------------------------------------------- other checks and bad input

@pytest.mark.parametrize("model", [PreLN(mlp_slope=0.2), PostLN(heads=2),
                                   AttentionOnly(layernorm=True)],
                         ids=["pre-ln", "post-ln-H2", "attention-only+ln"])
def test_layernorm_archs_are_literal_only(model):
    ds = sample(model, sde.equicorrelated(4, 0.1), width=16, depth=3, n_paths=8, seed=1)
    assert ds.attrs["sampler"] == "literal" and ds.attrs["arch"] == model.arch
    assert np.isfinite(ds.V.values).all()
    with pytest.raises(CovsdeInputError, match="reduced is not available"):
        sample(model, sde.equicorrelated(4, 0.1), width=16, depth=3, n_paths=8, seed=1,
               sampler="reduced")
    with pytest.raises(CovsdeInputError, match="no covariance SDE"):
        sde.simulate(model, sde.equicorrelated(4, 0.1), t_end=1.0, dt=0.1, n_paths=2, seed=1)


#: reduced ≡ literal for the unshaped stacks without LN (docs/theory.md §5.8)
EXACT = {
    "softmax": AttentionOnly(),
    "causal-H2": AttentionOnly(mask="causal", heads=2),
    # one sparse graph for both samplers (a run's graph is drawn from its seed)
    "sparse": AttentionOnly(mask=sde.masks.Mask("sparse", sparse_k=1).matrix(4, 7)),
    "e-spa": AttentionOnly(attention="e-spa", spa_final=0.05),
    "value-skipinit": AttentionOnly(attention="value-skipinit", skip_beta=0.5),
    "vanilla-leaky": Vanilla(mlp_slope=0.2),
    "vanilla-sliding-H2": Vanilla(heads=2, mask="sliding", window=1),
}


def _ks_min(a, b):
    """Smallest KS p-value over every V_ab (a ≤ b) and ρ_ab (a < b) at the last and middle
    saved depth, and the number of tests."""
    ps = []
    for idx in (-1, a.sizes["time"] // 2):
        A, B = a.V.values[:, idx], b.V.values[:, idx]
        m = A.shape[-1]
        for i in range(m):
            for j in range(i, m):
                ps.append(scipy.stats.ks_2samp(A[:, i, j], B[:, i, j]).pvalue)
                if i < j:
                    ra = A[:, i, j] / np.sqrt(A[:, i, i] * A[:, j, j])
                    rb = B[:, i, j] / np.sqrt(B[:, i, i] * B[:, j, j])
                    ps.append(scipy.stats.ks_2samp(ra, rb).pvalue)
    return min(ps), len(ps)


@pytest.mark.parametrize("name", list(EXACT))
def test_unshaped_reduced_equals_literal(name):
    """m = 4, n = 16, depth 2, 4000 paths each (KS, 32 statistics, Bonferroni at 1e-3 →
    threshold 3.1e-5). The reduced sampler is the default for these archs. Depth 2, not more:
    the softmax stacks collapse so fast that by depth 3 1 − ρ is at round-off (2e-16), where
    the two samplers' different arithmetic, not their law, decides the KS test."""
    model = EXACT[name]
    V0 = sde.equicorrelated(4, 0.3)
    kw = dict(width=16, depth=2, n_paths=4000, save_every=1)
    lit = sample(model, V0, seed=1, sampler="literal", **kw)
    red = sample(model, V0, seed=2, **kw)
    assert red.attrs["sampler"] == "reduced" and red.attrs["n_dead"] == 0
    pmin, k = _ks_min(lit, red)
    assert pmin >= ALPHA / k, f"{name}: reduced ≠ literal (p = {pmin:.3g})"


@pytest.mark.parametrize("name,change", [("softmax", {"mask": "causal"}),
                                         ("value-skipinit", {"skip_beta": 0.6}),
                                         ("vanilla-leaky", {"mlp_slope": 0.5})])
def test_unshaped_reduced_control(name, change):
    """The same test rejects a reduced sampler of a changed model (a mask swap, β +20 %, a
    leaky slope 0.2 → 0.5), asserted 10× below the threshold."""
    model = EXACT[name]
    V0 = sde.equicorrelated(4, 0.3)
    kw = dict(width=16, depth=2, n_paths=4000, save_every=1)
    lit = sample(model, V0, seed=1, sampler="literal", **kw)
    bad = sample(model.replace(**change), V0, seed=3, **kw)
    pmin, k = _ks_min(lit, bad)
    assert pmin < ALPHA / k / 10, f"{name} {change}: not rejected (p = {pmin:.3g})"


BAD = [
    (["--arch", "attention-only", "--attention", "value-skipinit", "--skip-alpha", "nan"],
     "--skip-alpha (skip_alpha) must be a finite"),
    (["--arch", "attention-only", "--attention", "value-skipinit", "--skip-beta", "inf"],
     "--skip-beta (skip_beta) must be a finite"),
    (["--arch", "post-ln", "--similarity-removal", "1.5"], "must be in [0, 1]"),
    (["--arch", "post-ln", "--similarity-removal", "-0.1"], "must be in [0, 1]"),
    (["--arch", "pre-ln", "--similarity-removal", "0.5"], "does not apply to --arch pre-ln"),
    (["--arch", "post-ln", "--layernorm"], "--layernorm does not apply to --arch post-ln"),
    (["--arch", "vanilla", "--skip-alpha", "2"], "apply only to --attention value-skipinit"),
    (["--arch", "attention-only", "--spa-final", "0.1"], "applies only to --attention e-spa"),
    (["--arch", "attention-only", "--attention", "e-spa", "--spa-final", "-1"],
     "must be > 0"),
    (["--arch", "attention-only", "--attention", "u-spa", "--spa-final", "1"],
     "must be in [0, 1)"),
    (["--arch", "attention-only", "--attention", "flash"], "must be one of softmax"),
    (["--arch", "post-ln", "--sampler", "reduced"], "reduced is not available"),
    (["--arch", "post-ln", "--tokens", "30000"], "memory limit"),
    (["--arch", "attention-only", "--mask", "sliding", "--window", "0"], "--window must be"),
    (["--arch", "attention-only", "--mask", "sparse", "--sparse-k", "4"],
     "sparse_k must be < m = 4"),
    (["--arch", "attention-only", "--window", "2"], "--window applies only to --mask"),
    (["--arch", "attention-only", "--attention", "e-spa", "--mask", "causal"],
     "builds its own causal"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a[1:4]) for a, _ in BAD])
def test_bad_input_one_line_exit_2_no_file(tmp_path, capsys, argv, needle):
    from compare.cli import main

    out = tmp_path / "x.nc"
    base = ["finite", "--width", "32", "--depth", "3", "--paths", "4", "--seed", "1",
            "--out", str(out)]
    if "--tokens" not in argv:
        base += ["--tokens", "4", "--rho0", "0.1"]
    else:
        base += ["--rho0", "0.1"]
    rc = main(base + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_cli_kernel_map_and_realised_time(tmp_path, capsys):
    """``--sampler kernel-map`` writes the one-path width-first map (equal to the schedule);
    a t_end that is not a whole number of layers is refused, naming the nearest valid
    --t-end and its depth (as simulate refuses a non-whole T/dt)."""
    from compare.cli import main
    from sde.io import read_dataset

    out = tmp_path / "km.nc"
    base = ["finite", "--tokens", "5", "--rho0", "0", "--width", "64", "--seed", "1",
            "--paths", "1"]
    assert main(base + ["--arch", "attention-only", "--attention", "u-spa", "--depth", "8",
                        "--sampler", "kernel-map", "--out", str(out)]) == 0
    ds = read_dataset(str(out))
    np.testing.assert_allclose(ds.V.values[0, -1], spa.kernel_schedule("u-spa", 0.8, 5, 8)[-1],
                               atol=1e-13)
    assert ds.attrs["source"] == "kernel-map"
    capsys.readouterr()
    rc = main(base + ["--arch", "post-ln", "--depth", "8", "--sampler", "kernel-map",
                      "--out", str(tmp_path / "no.nc")])
    assert rc == 2 and "no exact width-first kernel map" in capsys.readouterr().err
    assert not (tmp_path / "no.nc").exists()
    rc = main(["finite", "--arch", "attention", "--gamma", "0.5", "--tau0", "1", "--tokens",
               "3", "--rho0", "0.2", "--width", "16", "--t-end", "0.3", "--paths", "3",
               "--seed", "1", "--out", str(tmp_path / "rt.nc")])
    assert rc == 2
    assert "nearest valid value is --t-end 0.3125 (--depth 5)" in capsys.readouterr().err
    assert not (tmp_path / "rt.nc").exists()
    rc = main(["finite", "--arch", "attention", "--gamma", "0.5", "--tau0", "1", "--tokens",
               "3", "--rho0", "0.2", "--width", "64", "--t-end", "0.001", "--paths", "3",
               "--seed", "1", "--out", str(tmp_path / "rt0.nc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "rounds to --depth 0" in err[0]
    assert not (tmp_path / "rt0.nc").exists()
