"""compare.distances and the `covsde compare` CLI."""
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
    df = distances(a, b, stats=["corr:0,1"], times=[1.0], n_boot=10)
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
    same = distances(runs["a"], runs["b"], stats=["corr:0,1", "V:0,0"], times=[1.0], n_boot=10)
    diff = distances(runs["a"], runs["c"], stats=["corr:0,1", "V:0,0"], times=[1.0], n_boot=10)
    assert (same["ks_pvalue"] > 0.01).all()
    assert (diff["ks_pvalue"] < 1e-6).all()
    # the noise floor sits at the level of the same-law distance, well below the difference
    assert (diff["ks"] > 3 * diff["ks_floor"]).all()


def test_point_mass_w1(runs):
    df = distances(runs["a"], runs["b"], stats=["corr:0,1"], times=[1.0], n_boot=5,
                   point=runs["ode"])
    V = runs["a"].V.isel(time=-1).values
    x = V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])
    W = runs["ode"].V.isel(time=-1).values[0]
    rho_ode = W[0, 1] / np.sqrt(W[0, 0] * W[1, 1])
    assert df.loc[0, "w1_point"] == pytest.approx(scipy.stats.wasserstein_distance(x, [rho_ode]))


def test_time_matching_reports_missing(runs):
    pairs, missing = match_times(runs["a"], runs["b"], [0.5, 0.505, 1.0])
    assert [p[2] for p in pairs] == [0.5, 1.0]
    assert missing == [0.505]


def test_mismatched_tokens_is_an_error(runs):
    other = sde.simulate(sde.ShapedMLP(), sde.equicorrelated(4, 0.2), t_end=0.1, dt=0.01,
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
    assert main(["compare", files["a"], files["b"], "--time", "1", "--boot", "5",
                 "--ode", files["ode"], "--plot", plot]) == 0
    out = capsys.readouterr().out
    assert "corr:0,1" in out and "W1(A,ODE)" in out and "wrote" in out
    import os
    assert os.path.getsize(plot) > 10_000
    assert main(["compare", files["a"], files["c"], "--stat", "V:0,0", "--stat", "effrank",
                 "--time", "0.5", "--time", "0.777", "--boot", "5", "--json"]) == 0
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
])
def test_cli_compare_bad_input(files, capsys, args, needle):
    args = [x.format(**files) for x in args]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
