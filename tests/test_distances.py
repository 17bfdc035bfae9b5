"""compare.distances and the `covsde compare` CLI.

A percentile bootstrap of KS / W1 is not a confidence interval (it can exclude its own
estimate), so no such interval is reported: the columns are ``ks_noise_floor``,
``w1_noise_floor``, ``w1_pvalue``, quantile differences with intervals, ``w1_a_to_ode`` and
``censored_*`` (and none of ``ks_ci_*``, ``w1_ci_*``, ``ks_floor``, ``w1_floor``,
``w1_point``, ``dead_*``); ``n_boot`` must be >= 40.
"""
import json

import numpy as np
import pytest
import scipy.stats

import sde
from compare.cli import main
from compare.distances import distances, ks_w1, match_times
from sde.io import write_dataset

V0 = sde.equicorrelated(3, 0.2)


@pytest.fixture(scope="module")
def runs():
    """Residual shaped MLP, m = 3, T = 1, 4000 paths each: two seeds at γ = 0.5, one at 0.65."""
    kw = dict(t_end=1.0, dt=0.01, n_paths=4000)
    return {
        "a": sde.simulate(sde.ShapedMLPResidual(0.5), V0, seed=1, **kw),
        "b": sde.simulate(sde.ShapedMLPResidual(0.5), V0, seed=2, **kw),
        "c": sde.simulate(sde.ShapedMLPResidual(0.65), V0, seed=2, **kw),
        "ode": sde.simulate(sde.ShapedMLPResidual(0.5), V0, t_end=1.0, dt=0.01, seed=0,
                            method="ode"),
    }


def test_ks_and_w1_are_scipys(rng):
    x, y = rng.standard_normal(500), 0.3 + rng.standard_normal(700)
    ks, p, w1 = ks_w1(x, y)
    ref = scipy.stats.ks_2samp(x, y)
    assert (ks, p) == (ref.statistic, ref.pvalue)
    assert w1 == scipy.stats.wasserstein_distance(x, y)


def test_distances_use_scipy_on_the_alive_values(runs):
    a, b = runs["a"], runs["b"]
    df = distances(a, b, stats=["corr:0,1"], times=[1.0], n_boot=40)
    V = a.V.isel(time=-1).values
    W = b.V.isel(time=-1).values
    x = V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])
    y = W[:, 0, 1] / np.sqrt(W[:, 0, 0] * W[:, 1, 1])
    assert df.loc[0, "ks"] == scipy.stats.ks_2samp(x, y).statistic
    assert df.loc[0, "w1"] == scipy.stats.wasserstein_distance(x, y)
    assert df.loc[0, "q50_a"] == np.quantile(x, 0.5)


def test_same_law_passes_and_gamma_30_percent_off_fails(runs):
    """4000 vs 4000 paths at T = 1: same law p > 0.01 (measured 0.98 / 0.57); γ 0.5 → 0.65
    gives KS ≈ 0.10–0.15, p ≈ 1e-19 (ρ_01) and 1e-40 (V_00), far below 1e-6."""
    same = distances(runs["a"], runs["b"], stats=["corr:0,1", "V:0,0"], times=[1.0])
    diff = distances(runs["a"], runs["c"], stats=["corr:0,1", "V:0,0"], times=[1.0])
    assert (same["ks_pvalue"] > 0.01).all()
    assert (diff["ks_pvalue"] < 1e-6).all()
    # the noise floor sits at the level of the same-law distance, well below the difference
    assert (diff["ks"] > 3 * diff["ks_noise_floor"]).all()
    # the permutation p-value of W1 agrees: same law not rejected, γ off rejected at the
    # smallest p-value 200 permutations can give
    assert (same["w1_pvalue"] > 0.01).all()
    assert (diff["w1_pvalue"] == 1 / 201).all()


def test_point_mass_w1(runs):
    df = distances(runs["a"], runs["b"], stats=["corr:0,1"], times=[1.0], n_boot=40,
                   point=runs["ode"])
    V = runs["a"].V.isel(time=-1).values
    x = V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])
    W = runs["ode"].V.isel(time=-1).values[0]
    rho_ode = W[0, 1] / np.sqrt(W[0, 0] * W[1, 1])
    assert df.loc[0, "w1_a_to_ode"] == pytest.approx(scipy.stats.wasserstein_distance(x, [rho_ode]))


def test_time_matching_reports_missing(runs):
    pairs, missing = match_times(runs["a"], runs["b"], [0.5, 0.505, 1.0])
    assert [p[2] for p in pairs] == [0.5, 1.0]
    assert missing == [0.505]


def test_mismatched_tokens_is_an_error(runs):
    other = sde.simulate(sde.ShapedMLP(), sde.equicorrelated(2, 0.2), t_end=0.1, dt=0.01,
                         n_paths=10, seed=0)
    with pytest.raises(sde.CovsdeInputError, match="token"):
        distances(runs["a"], other)


def test_no_common_time_is_an_error(runs):
    with pytest.raises(sde.CovsdeInputError, match="no time in common"):
        distances(runs["a"], runs["b"], times=[0.123])


@pytest.fixture(scope="module")
def files(runs, tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    out = {}
    for k, ds in runs.items():
        out[k] = str(d / f"{k}.nc")
        write_dataset(ds, out[k])
    bad = d / "garbage.nc"
    bad.write_bytes(b"not a netcdf file at all")
    out["garbage"] = str(bad)
    foreign = d / "foreign.nc"
    import xarray as xr
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    out["foreign"] = str(foreign)
    out["dir"] = str(d)
    return out


def test_cli_compare_table_json_plot(files, capsys):
    plot = files["dir"] + "/ov.png"
    assert main(["compare", files["a"], files["b"], "--time", "1", "--boot", "40",
                 "--ode", files["ode"], "--plot", plot]) == 0
    out = capsys.readouterr().out
    assert "corr:0,1" in out and "W1(A,ODE)" in out and "wrote" in out
    assert "n_boot = 40, seed = 0" in out and "censoring:" in out
    import os
    assert os.path.getsize(plot) > 10_000
    assert main(["compare", files["a"], files["c"], "--stat", "V:0,0", "--stat", "effrank",
                 "--time", "0.5", "--time", "0.777", "--boot", "40", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["stat"] for r in doc["rows"]] == ["V:0,0", "effrank"]
    assert doc["missing_times"] == [0.777]


@pytest.mark.parametrize("args, needle", [
    (["{garbage}", "{b}"], "cannot read"),
    (["{foreign}", "{b}"], "not a covsde dataset"),
    (["{a}", "{dir}/missing.nc"], "not found"),
    (["{a}", "{b}", "--stat", "kurtosis"], "unknown statistic"),
    (["{a}", "{b}", "--stat", "corr:0,3"], "out of range"),
    (["{a}", "{b}", "--stat", "corr:1,1"], "two different tokens"),
    (["{a}", "{b}", "--plot", "{dir}/nope/x.png"], "directory does not exist"),
    (["{a}", "{b}", "--seed", "-1"], "--seed"),
    (["{a}", "{b}", "--boot", "0"], "--boot"),
    (["{a}", "{b}", "--boot", "1"], "--boot"),
    (["{a}", "{ode}"], "give it with --ode"),
    (["{ode}", "{b}"], "give it with --ode"),
    (["{a}", "{b}", "--ode", "{b}"], "one-path"),
    (["{a}", "{b}", "--time", "0.305"], "nearest common times 0.3, 0.31"),
    (["{a}", "{b}", "--plot", "{dir}"], "is a directory"),
])
def test_cli_compare_bad_input(files, capsys, args, needle):
    args = [x.format(**files) for x in args]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


# --------------------------------------------------------------------------- columns, coverage
from compare.cli.compare import format_table, g3  # noqa: E402
from compare.distances import (bootstrap_quantiles, permutation_null,  # noqa: E402
                               quantile_difference_ci)


@pytest.mark.parametrize("delta", [0.0, 0.3])
def test_quantile_difference_interval_has_nominal_coverage(delta):
    """400 replicates of N(δ, 1) (400 draws) vs N(0, 1) (600 draws): the percentile-bootstrap
    95 % interval of every quantile difference covers the truth δ in 95 % ± 4.5 % of them
    (binomial sd 1.1 %; measured 94–97 %). Negative control: under the shift δ = 0.3 the same
    intervals cover the wrong value 0 for the median in at most 50 % (measured 3 %)."""
    rng = np.random.default_rng(2024 + int(10 * delta))
    R = 400
    cover = np.zeros(5)
    cover_zero = np.zeros(5)
    for _ in range(R):
        x = rng.standard_normal(400) + delta
        y = rng.standard_normal(600)
        qa, qb, d, lo, hi = quantile_difference_ci(x, y, 200, rng)
        assert np.all(lo <= d) and np.all(d <= hi)  # an interval contains its estimate
        cover += (lo <= delta) & (delta <= hi)
        cover_zero += (lo <= 0) & (0 <= hi)
    assert np.all(np.abs(cover / R - 0.95) <= 0.045), cover / R
    if delta > 0:
        assert cover_zero[2] / R < 0.5, cover_zero / R


def test_w1_permutation_pvalue_is_calibrated_and_has_power():
    """200 replicates, 200 vs 300 draws, 99 permutations: under one law P(p <= 0.05) is
    0.05 ± 0.054 (3.5 binomial sd; measured 0.035); a shift of 0.4 sd is rejected in > 80 %."""
    rng = np.random.default_rng(7)
    rej = {0.0: 0, 0.4: 0}
    for delta in rej:
        for _ in range(200):
            x, y = rng.standard_normal(200) + delta, rng.standard_normal(300)
            w1 = scipy.stats.wasserstein_distance(x, y)
            ks, pw = permutation_null(x, y, 99, rng)
            rej[delta] += (1 + np.sum(pw >= w1 * (1 - 1e-12))) / 100 <= 0.05
    assert rej[0.0] / 200 <= 0.05 + 0.054
    assert rej[0.4] / 200 > 0.8


def test_permutation_null_matches_scipy_on_the_identity_labelling(rng):
    """The kernel's KS / W1 of a relabelling equals scipy's on the same split (ties too)."""
    x = np.round(rng.standard_normal(300), 1)
    y = np.round(rng.standard_normal(200), 1)
    ks, w1 = permutation_null(x, y, 500, np.random.default_rng(0))
    # the permutation mean sits near the same-law level 0.9 / sqrt(n_eff)
    assert 0.3 / np.sqrt(120) < ks.mean() < 1.5 / np.sqrt(120)
    assert np.all((ks >= 0) & (ks <= 1)) and np.all(w1 >= 0)


def test_bootstrap_quantiles_have_the_law_of_resampled_quantiles():
    """Drawn through uniform order statistics vs by resampling whole samples: 20 000
    replicates each, n = 30; means agree within 4 standard errors and sds within 5 %."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(30)
    a = bootstrap_quantiles(x, 20_000, rng)
    b = np.quantile(x[rng.integers(0, 30, size=(20_000, 30))], [0.1, 0.25, 0.5, 0.75, 0.9],
                    axis=1).T
    se = np.sqrt(a.var(0) / 20_000 + b.var(0) / 20_000)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4 * se)
    assert np.allclose(a.std(0), b.std(0), rtol=0.05)


def test_identical_datasets_give_zero_with_intervals_around_it(runs):
    df = distances(runs["a"], runs["a"], stats=["corr:0,1"], times=[0.5, 1.0])
    assert (df["ks"] == 0).all() and (df["w1"] == 0).all() and (df["ks_pvalue"] == 1).all()
    assert (df["w1_pvalue"] == 1).all()
    for q in (10, 25, 50, 75, 90):
        assert (df[f"q{q}_a_minus_b"] == 0).all()
        assert (df[f"q{q}_a_minus_b_ci95_low"] <= 0).all()
        assert (df[f"q{q}_a_minus_b_ci95_high"] >= 0).all()


def test_every_interval_contains_its_estimate_and_settings_are_recorded(runs):
    df = distances(runs["a"], runs["c"], stats=["corr:0,1", "V:0,1"], seed=5,
                   times=[0.25, 0.5, 1.0])
    for q in (10, 25, 50, 75, 90):
        est = df[f"q{q}_a_minus_b"]
        assert (df[f"q{q}_a_minus_b_ci95_low"] <= est).all()
        assert (est <= df[f"q{q}_a_minus_b_ci95_high"]).all()
    assert df.attrs["n_boot"] == 200 and df.attrs["seed"] == 5
    assert not any(c.startswith(("ks_ci", "w1_ci")) for c in df.columns)
    again = distances(runs["a"], runs["c"], stats=["corr:0,1", "V:0,1"], seed=5,
                      times=[0.25, 0.5, 1.0])
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(df, again)


def test_few_resamples_are_an_error_or_a_stated_warning(runs):
    for bad in (0, 1, 39, 2.5, "100", True):
        with pytest.raises(sde.CovsdeInputError, match="n_boot"):
            distances(runs["a"], runs["b"], times=[1.0], n_boot=bad)
    with pytest.warns(UserWarning, match="only 50 resamples"):
        df = distances(runs["a"], runs["b"], times=[1.0], n_boot=50)
    assert any("only 50 resamples" in w for w in df.attrs["warnings"])


@pytest.mark.parametrize("kwargs, needle", [
    (dict(stats="corr:0,1"), "single string"),
    (dict(stats=[1]), "name like"),
    (dict(stats=[]), "at least one"),
    (dict(stats=["kurtosis"]), "unknown statistic"),
    (dict(times="0.5"), "times"),
    (dict(times=[float("nan")]), "times"),
    (dict(times=[[0.5]]), "times"),
    (dict(seed=-1), "seed"),
    (dict(bound=0), "bound"),
])
def test_python_api_arguments_are_validated(runs, kwargs, needle):
    with pytest.raises(sde.CovsdeInputError, match=needle):
        distances(runs["a"], runs["b"], **kwargs)


def test_python_api_datasets_are_validated(runs):
    with pytest.raises(sde.CovsdeInputError, match="a must be a covsde dataset"):
        distances([1, 2, 3], runs["b"])
    with pytest.raises(sde.CovsdeInputError, match="b has one path"):
        distances(runs["a"], runs["ode"])
    with pytest.raises(sde.CovsdeInputError, match="a has one path"):
        distances(runs["ode"], runs["a"])
    with pytest.raises(sde.CovsdeInputError, match="one-path"):
        distances(runs["a"], runs["b"], point=runs["c"])


def test_scalar_time_is_accepted(runs):
    df = distances(runs["a"], runs["b"], times=0.5)
    assert list(df["time"]) == [0.5]


def test_missing_time_names_the_nearest(runs):
    with pytest.raises(sde.CovsdeInputError, match=r"nearest common 0\.3, 0\.31"):
        distances(runs["a"], runs["b"], times=[0.305])


def test_one_censoring_rule_on_both_sides(runs):
    """A path of A above the SDE bound (1e4) at t = 0.5 is censored from t = 0.5 on, as the
    SDE would have killed it; the rule is stated; the distance ignores the huge value."""
    a = runs["a"].copy(deep=True)
    V = a["V"].values
    i05 = int(np.argmin(np.abs(a["time"].values - 0.5)))
    V[7, i05, 0, 0] = 7.2e4  # one path, one saved time (e.g. a finite network spike)
    assert np.isfinite(V[7, i05 + 1]).all()
    df = distances(a, runs["b"], stats=["V:0,0"], times=[0.49, 0.5, 1.0])
    n = a.sizes["path"]
    dead_a = lambda t: 1 - np.isfinite(runs["a"]["V"].sel(time=t).values[:, 0, 0]).mean()  # noqa
    assert df["censored_a"].tolist() == pytest.approx(
        [dead_a(0.49), dead_a(0.5) + 1 / n, dead_a(1.0) + (1 / n) * np.isfinite(
            runs["a"]["V"].values[7, -1, 0, 0])])
    assert "max|V_ab| <= 10000" in df.attrs["censoring"] and df.attrs["bound"] == 1e4
    ref = distances(runs["a"], runs["b"], stats=["V:0,0"], times=[0.5])
    assert df.loc[1, "w1"] == pytest.approx(ref.loc[0, "w1"], rel=0.05)


def test_small_numbers_are_not_printed_as_zero(runs):
    assert g3(1e-13) == "1e-13" and g3(0.0123456) == "0.0123"
    df = distances(runs["a"], runs["b"], times=[1.0])
    df.loc[0, "w1"] = 1.234e-13
    assert "1.23e-13" in format_table(df, "A", "B")


def test_cli_json_parses_with_plot_and_records_settings(files, capsys):
    plot = files["dir"] + "/ov2.png"
    assert main(["compare", files["a"], files["b"], "--time", "0.5", "--time", "1",
                 "--stat", "corr:0,1", "--stat", "V:0,0", "--json", "--plot", plot,
                 "--seed", "3"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["n_boot"] == 200 and doc["seed"] == 3 and "censoring" in doc
    assert "ks_noise_floor" in doc["legend"] and "wrote" in cap.err
    assert {"ks", "ks_pvalue", "w1_pvalue", "q50_a_minus_b_ci95_low"} <= set(doc["rows"][0])


def test_cli_help_has_the_legend(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    for col in ("ks_noise_floor", "w1_pvalue", "qXX_a_minus_b_ci95_low/high", "censored_a"):
        assert col in out
