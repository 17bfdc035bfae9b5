"""The consensus distance carried without a floor (finite/consensus.py, docs/theory.md §2.4c).

* Literal sampler, path by path, against an mpmath network with the same weights
  (tests/consensus_reference.py), at depths 3–5 where log μ/‖X‖ reaches −12 … −140: complete
  and causal masks (causal with m = 2 and depth 30, where it reaches −21), and the complete
  mask with LayerNorm. Control: μ computed from V (the floored measure) is NaN or off there.
* Reduced sampler, path by path against the mpmath reduced recurrence with the same draws
  (the same cases), and in law at depths where float64's V has no digit left against the
  literal sampler (two-sample KS, Bonferroni over depths and masks). Control: the reduced
  values × 1.15 are rejected.
* Where the float64 measure from V is still accurate (log μ/‖X‖ > −5), the carried value
  equals it path by path.
"""
import numpy as np
import pytest
import scipy.stats

import consensus_reference as ref
import sde
from finite import sample
from finite.consensus import log_consensus_from_V
from finite.reduced import FACTOR_OK, psd_factor
from finite.unshaped import AttentionOnly
from sde.masks import Mask

ALPHA = 1e-3
TOL = 1e-9


def _run(model, m, n, depth, paths, seed, sampler):
    # the mpmath references start from the aligned frame X0 = √n L [I 0] (LayerNorm stacks
    # default to Haar-random frames, docs/theory.md §2.4f)
    return sample(model, np.eye(m), width=n, depth=depth, n_paths=paths, seed=seed,
                  sampler=sampler, save_every=1, progress=False, initial_x="aligned")


@pytest.mark.parametrize("mask,m,depth,deep", [("complete", 4, 5, -50.0),
                                               ("causal", 2, 30, -15.0)])
def test_literal_matches_mpmath_path_by_path(mask, m, depth, deep):
    ds = _run(AttentionOnly(mask=mask), m, 8, depth, 6, 11, "literal")
    M = None if mask == "complete" else Mask(mask).matrix(m)
    want = ref.literal(np.eye(m), 8, depth, 6, 11, M, dps=ref.digits_needed(3 * deep))
    got = ds.log_consensus.values
    assert np.median(want[:, -1]) < deep                      # far below float64's reach
    assert np.max(np.abs(got - want)) < TOL
    floored = log_consensus_from_V(ds.V.values)               # control: the measure from V
    bad = ~(np.abs(floored - want) < TOL)
    assert bad[:, -1].all()


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
def test_sparse_mask_with_merging_tokens_matches_mpmath(sampler):
    """This sparse graph gives tokens 2 and 3 the same keys: they merge doubly exponentially
    inside Y while μ decays slowly. The float64 measure from V is off by 0.67 in log at depth 5
    (log μ ≈ −4); the carried one stays within 1e-6 (it keeps μ's relative precision, not that
    of the merged pair's difference, which costs digits in the path, not in μ)."""
    model = AttentionOnly(mask="sparse", sparse_k=2)
    ds = _run(model, 6, 16, 5, 8, 5, sampler)
    M = np.asarray(Mask("sparse", sparse_k=2).matrix(6, 5))
    assert (M[1] == M[2]).all()
    fn = ref.literal if sampler == "literal" else ref.reduced
    want = fn(np.eye(6), 16, 5, 8, 5, M, dps=100)
    assert np.max(np.abs(ds.log_consensus.values - want)) < 1e-6


def test_literal_layernorm_matches_mpmath_path_by_path():
    ds = _run(AttentionOnly(layernorm=True), 4, 8, 5, 6, 12, "literal")
    want = ref.literal_ln(np.eye(4), 8, 5, 6, 12, dps=150)
    assert np.median(want[:, -1]) < -50.0
    assert np.max(np.abs(ds.log_consensus.values - want)) < TOL
    assert ~(np.abs(log_consensus_from_V(ds.V.values) - want) < TOL)[:, -1].all()


@pytest.mark.parametrize("mask,m,depth,deep", [("complete", 4, 5, -50.0),
                                               ("causal", 2, 30, -15.0)])
def test_reduced_matches_mpmath_recurrence_path_by_path(mask, m, depth, deep):
    ds = _run(AttentionOnly(mask=mask), m, 8, depth, 6, 13, "reduced")
    M = None if mask == "complete" else Mask(mask).matrix(m)
    want = ref.reduced(np.eye(m), 8, depth, 6, 13, M, dps=ref.digits_needed(6 * deep))
    assert np.median(want[:, -1]) < deep
    assert np.max(np.abs(ds.log_consensus.values - want)) < TOL
    assert ~(np.abs(log_consensus_from_V(ds.V.values) - want) < TOL)[:, -1].all()


@pytest.mark.parametrize("mask,m,depths", [("complete", 4, (3, 4, 5)),
                                           ("causal", 2, (20, 25, 30))])
def test_reduced_law_equals_literal_deep(mask, m, depths):
    model = AttentionOnly(mask=mask)
    lit = _run(model, m, 8, depths[-1], 600, 21, "literal").log_consensus.values
    red = _run(model, m, 8, depths[-1], 600, 22, "reduced").log_consensus.values
    assert np.median(lit[:, depths[0]]) < -12.0               # float64's V has no digit left
    level = ALPHA / (2 * len(depths))                         # Bonferroni: 2 masks × depths
    for d in depths:
        assert scipy.stats.ks_2samp(lit[:, d], red[:, d]).pvalue > level
    rejected = [scipy.stats.ks_2samp(lit[:, d], 1.15 * red[:, d]).pvalue < level
                for d in depths]
    assert all(rejected)                                      # control


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
@pytest.mark.parametrize("kw", [{"mask": "sliding", "window": 1}, {"heads": 2},
                                {"attention": "value-skipinit", "skip_alpha": 0.3,
                                 "skip_beta": 0.7}])
def test_carried_equals_measure_from_V_where_that_is_accurate(kw, sampler):
    ds = _run(AttentionOnly(**kw), 6, 16, 6, 16, 5, sampler)
    got, fromV = ds.log_consensus.values, log_consensus_from_V(ds.V.values)
    ok = fromV > -5.0
    if sampler == "reduced" and "heads" not in kw:
        # one head: the sampler factors the saved V itself. Where V was too close to
        # singular for Cholesky, the sampler factors it by eigh (clipped) and the carried
        # state keeps its own Cholesky frame: the same law, another pathwise coupling
        # (docs/theory.md §2.4c). Compare only up to the first such layer.
        _, flag = psd_factor(ds.V.values)
        clipped_before = np.cumsum(flag != FACTOR_OK, axis=1) - (flag != FACTOR_OK)
        assert (clipped_before[:, -1] > 0).sum() <= 2
        ok &= clipped_before == 0
    assert ok.sum() >= 40
    assert np.max(np.abs(got[ok] - fromV[ok])) < 1e-8
    assert ds.attrs["log_consensus_method"].startswith("carried")


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
@pytest.mark.parametrize("model", [sde.ShapedAttention(0.5, 1.0),
                                   sde.ShapedAttention(1.0, 0.4, heads=2),
                                   sde.ShapedAttention(0.7, 0.8, mask="causal")])
def test_shaped_attention_carried_equals_measure_from_V(model, sampler):
    """Shaped attention does not collapse (its skip keeps μ/‖X‖ of order one), so V has all
    the digits: the carried value equals it path by path (heads = 2 at n = 16, m = 5 has a
    rank-deficient Wishart draw: its root comes from eigh)."""
    ds = sample(model, sde.equicorrelated(5, 0.3), width=16, n_paths=50, seed=2, depth=12,
                sampler=sampler, save_every=1, progress=False)
    assert ds.attrs["log_consensus_method"].startswith("carried")
    assert np.max(np.abs(ds.log_consensus.values - log_consensus_from_V(ds.V.values))) < 1e-12


def test_archs_without_a_carried_state_use_V_and_censor():
    from finite.unshaped import PostLN
    ds = _run(PostLN(), 4, 16, 3, 4, 1, "literal")
    assert ds.attrs["log_consensus_method"].startswith("from V")
    assert np.allclose(ds.log_consensus.values, log_consensus_from_V(ds.V.values),
                       equal_nan=True)


def test_compare_stat_log_consensus(tmp_path, capsys):
    """``covsde compare --stat log-consensus`` reads the carried variable: it finds the law
    of two literal runs equal at depth 6 (log μ ≈ −370, far below V's floor) and a causal
    run different (control); from V alone the SDE-style fallback is censored there."""
    import json

    from compare.cli import main
    from compare.statistics import compute_stat
    from sde.io import write_dataset

    runs = {}
    for name, kw, seed in (("a", {}, 1), ("b", {}, 2), ("c", {"mask": "causal"}, 3)):
        runs[name] = _run(AttentionOnly(**kw), 4, 16, 6, 100, seed, "literal")
        write_dataset(runs[name], str(tmp_path / f"{name}.nc"))
    assert np.median(runs["a"].log_consensus.values[:, -1]) < -300.0
    assert np.isnan(compute_stat(runs["a"]["V"], "log-consensus").values[:, -1]).all()

    def last_p(x, y):
        rc = main(["compare", str(tmp_path / f"{x}.nc"), str(tmp_path / f"{y}.nc"), "--stat",
                   "log-consensus", "--json", "--boot", "200", "--time", "0.375"])
        assert rc == 0
        (row,) = json.loads(capsys.readouterr().out)["rows"]
        assert row["n_used_a"] == 100
        return row["ks_pvalue"]

    assert last_p("a", "b") > ALPHA
    assert last_p("a", "c") < ALPHA
