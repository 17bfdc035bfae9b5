"""The sweep sources the gallery needs — ``[sources.blowup]`` (the SDE's own
P(tau <= T) converged in dt), an SDE sample shared across widths and bootstrap replicates for
the convergence slope — and the in-process (``inline``) runner.

Tiny grids (shaped attention m = 3, 300 paths; shaped MLP 200-400 paths), run in this
process; one ``--workers 1`` run through the CLI (Dask LocalCluster) checks that both runners
store the same numbers.
"""
import os

import numpy as np
import pytest
import xarray as xr

from compare.cli import main
from compare.sweep import open_cell, open_sweep, run_sweep
from compare.sweep.config import EXAMPLE_CONFIG, cells, parse_config
from compare.figures.sweep import convergence_fits, fit_slope, plot_convergence, plot_stability
from sde.blowup import blowup_probability
from sde.initial import equicorrelated
from sde.models import ShapedAttention

BLOWUP = """\
seed = 11

[model]
arch = "attention"
gamma = [0.5, 1.0]
tau0 = [0.5, 1.0]

[initial]
tokens = 3
rho0 = 0.2

[grid]
ratio = [0.5, 1.0]

[sources.blowup]
paths = 300
dt0 = 0.1
method = "spd"
max_halvings = 4
rtol = 0.1
atol = 0.2
"""


def _corrupt(path):
    """Flip 64 bytes in the middle of a file (its checksum no longer matches)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        chunk = fh.read(64)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in chunk))


def _raw(text=BLOWUP):
    import tomllib

    return tomllib.loads(text)


@pytest.fixture(scope="module")
def blowup_store(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("blowup") / "store")
    res = run_sweep(parse_config(_raw()), store, inline=True, progress=False, log=lambda s: None)
    assert res["computed"] == 8 and res["skipped"] == 0
    return store


def test_blowup_cell_equals_blowup_probability_with_the_cell_seed(blowup_store):
    """One definition: a blowup cell is sde.blowup.blowup_probability at T = ratio."""
    config = parse_config(_raw())
    ds = open_sweep(blowup_store)
    assert set(ds.dims) == {"ratio", "gamma", "tau0"}
    for spec in cells(config):
        r, g, tau = spec["axes"]["ratio"], spec["axes"]["gamma"], spec["axes"]["tau0"]
        ref = blowup_probability(ShapedAttention(gamma=g, tau0=tau), equicorrelated(3, 0.2),
                                 t_end=r, dt0=0.1, n_paths=300, seed=spec["seeds"]["blowup"],
                                 method="spd", max_halvings=4, rtol=0.1, atol=0.2,
                                 progress=False)
        cell = ds.sel(ratio=r, gamma=g, tau0=tau)
        assert float(cell.blowup_probability) == ref.probability
        assert (float(cell.blowup_ci95_low), float(cell.blowup_ci95_high)) == (ref.ci_low,
                                                                               ref.ci_high)
        assert float(cell.blowup_dt) == ref.dt
        assert bool(cell.blowup_converged) == ref.converged
        assert int(cell.blowup_n_levels) == len(ref.sequence)
        assert float(cell.blowup_previous_probability) == ref.sequence[-2]["probability"]
        last = ref.sequence[-1]
        assert float(cell.blowup_difference) == last["difference"]
        assert [float(cell.blowup_difference_ci95_low), float(cell.blowup_difference_ci95_high)] \
            == last["difference_ci"]
        assert float(cell.blowup_tolerance) == last["tolerance"]
        seq = open_cell(blowup_store, "blowup", ratio=r, gamma=g, tau0=tau)
        assert seq["n_dead"].values.tolist() == [s["n_dead"] for s in ref.sequence]
        assert seq["dt"].values.tolist() == [s["dt"] for s in ref.sequence]
        assert seq["seed"].values.tolist() == [s["seed"] for s in ref.sequence]
        assert (seq["n_left_cone"].values == 0).all()  # SPD: no cone exit
    # the cubic drift: gamma = 1 blows up more than gamma = 0.5 (tau0 = 0.5, T = 1)
    t1 = ds.sel(ratio=1.0, tau0=0.5)
    assert float(t1.blowup_ci95_low.sel(gamma=1.0)) > float(t1.blowup_ci95_high.sel(gamma=0.5))


def test_blowup_sweep_resumes_and_a_finished_resume_writes_nothing(blowup_store, tmp_path):
    import shutil

    store = str(tmp_path / "copy")
    shutil.copytree(blowup_store, store)
    reference = open_sweep(store)
    config = parse_config(_raw())

    def tree():
        return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
                for d, _, fs in os.walk(store) for f in fs}

    before = tree()
    res = run_sweep(config, store, resume=True, inline=True, progress=False, log=lambda s: None)
    assert (res["computed"], res["skipped"]) == (0, 8)
    assert tree() == before  # nothing rewritten, not even the manifest
    cell_files = sorted(p for p in before if p.endswith(".nc"))
    os.remove(cell_files[0])                       # lost
    _corrupt(cell_files[1])
    res = run_sweep(config, store, resume=True, inline=True, progress=False, log=lambda s: None)
    assert (res["computed"], res["skipped"]) == (2, 6)
    after = tree()
    for p in cell_files[2:]:
        assert after[p] == before[p]  # finished cells never rewritten
    xr.testing.assert_equal(open_sweep(store), reference)


def test_blowup_sweep_on_dask_equals_inline(blowup_store, tmp_path, capsys):
    cfg = tmp_path / "b.toml"
    cfg.write_text(BLOWUP)
    out = tmp_path / "dask"
    assert main(["sweep", str(cfg), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    xr.testing.assert_equal(open_sweep(str(out)).drop_vars("cell_file"),
                            open_sweep(blowup_store).drop_vars("cell_file"))


@pytest.mark.parametrize("old,new,key", [
    ("atol = 0.2", "atol = 0.2\ndt = 0.1", "sources.blowup.dt: unknown key"),
    ('method = "spd"', 'method = "rk4"', "sources.blowup.method: must be one of"),
    ("dt0 = 0.1", "dt0 = 0.3", "sources.blowup.dt0:"),
    ("dt0 = 0.1", "dt0 = -0.1", "sources.blowup.dt0: must be > 0"),
    ("paths = 300\n", "", "sources.blowup.paths: missing"),
    ("atol = 0.2", "atol = -0.05", "sources.blowup.atol must be a finite number >= 0"),
    ("rtol = 0.1\natol = 0.2", "rtol = 0.0\natol = 0.0",
     "sources.blowup.rtol and atol must not both"),
    ("max_halvings = 4", "max_halvings = 0", "sources.blowup.max_halvings: must be an integer"),
    ("seed = 11", 'seed = 11\nstats = ["corr:0,1"]', "stats: statistics need an [sources.sde]"),
    ("[sources.blowup]", "[sources.finite]\npaths = 10\n[sources.blowup]", "sources.sde: missing"),
    ("ratio = [0.5, 1.0]", "ratio = [0.5, 1.0]\nwidth = [8]", "grid.width: widths need"),
])
def test_bad_blowup_config_is_one_line_exit_2(tmp_path, capsys, old, new, key):
    assert old in BLOWUP
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BLOWUP.replace(old, new, 1))
    out = tmp_path / "out"
    rc = main(["sweep", str(cfg), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"covsde sweep: error: {key}"), err
    assert not out.exists()


def test_example_config_documents_the_new_keys():
    for key in ("[sources.blowup]", "dt0", "max_halvings", "rtol", "atol", "share",
                "boot_replicates"):
        assert key in EXAMPLE_CONFIG


def test_stability_map_draws_converged_probabilities_and_marks_not_converged(blowup_store):
    ds = open_sweep(blowup_store)
    fig = plot_stability(ds)  # default: the last ratio (T = 1)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    cell = ds.sel(ratio=1.0)
    for g, tau in ((0.5, 0.5), (1.0, 0.5), (0.5, 1.0), (1.0, 1.0)):
        p = float(cell.blowup_probability.sel(gamma=g, tau0=tau))
        dt = float(cell.blowup_dt.sel(gamma=g, tau0=tau))
        assert any(t.startswith(f"{100 * p:.1f} %") or t.startswith(f"{100 * p:.2f} %")
                   for t in texts)
        assert any(f"dt = {dt:.3g}" in t for t in texts)
        lo = float(cell.blowup_difference_ci95_low.sel(gamma=g, tau0=tau))
        assert any(f"Δ [{100 * lo:+.2f}".replace("-", "−") in t for t in texts)
    assert bool(cell.blowup_converged.all())  # atol = 0.2: every cell settles at 300 paths
    np.testing.assert_allclose(ax.images[0].get_array(),
                               cell.blowup_probability.transpose("gamma", "tau0").values * 100)
    assert "P(τ ≤ T)" in ax.get_title() and "converged" in ax.get_title()
    assert not any("unsettled" in t for t in texts)
    # a cell the rule could not settle is drawn as such: grey (no colour), hatched, labelled
    nc = ds.copy()
    nc["blowup_converged"] = nc["blowup_converged"].where(
        (nc.gamma != 1.0) | (nc.tau0 != 0.5), 0)
    ax = plot_stability(nc).axes[0]
    assert sum(t.get_text().startswith("unsettled") for t in ax.texts) == 1
    assert sum(p.get_hatch() == "///" for p in ax.patches) == 1
    img = ax.images[0].get_array()
    assert np.ma.count_masked(img) == 1 and img.mask[1, 0]  # gamma = 1.0, tau0 = 0.5
    assert "unsettled" in ax.get_title()


# ---------------------------------------------------------------- convergence: shared SDE
CONV = {
    "seed": 5, "stats": ["corr:0,1"],
    "model": {"arch": "mlp", "c_plus": 0.0, "c_minus": -1.0},
    "initial": {"tokens": 3, "rho0": 0.2},
    "grid": {"ratio": [0.25, 0.5], "width": [8, 16, 32]},
    "sources": {"sde": {"paths": 400, "dt": 2.0 ** -7, "share": ["ratio", "width"]},
                "finite": {"sampler": "reduced", "paths": 200, "share": ["ratio"]}},
    "compare": {"n_boot": 40, "boot_replicates": True},
}


@pytest.fixture(scope="module")
def conv_store(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("conv") / "store")
    run_sweep(parse_config(CONV), store, inline=True, progress=False, log=lambda s: None)
    return store


def test_shared_samples_and_boot_replicates(conv_store):
    """One SDE sample for the whole grid, one finite sample per width, each stored once."""
    config = parse_config(CONV)
    specs = cells(config)
    assert len({s["seeds"]["sde"] for s in specs}) == 1
    assert len({s["seeds"]["sde_boot"] for s in specs}) == 1
    assert len({s["seeds"]["finite"] for s in specs}) == 3
    shared = sorted(os.listdir(os.path.join(conv_store, "shared")))
    assert len(shared) == 4 and sum(f.startswith("sde_") for f in shared) == 1
    sde = open_cell(conv_store, "sde", ratio=0.25, width=8)
    np.testing.assert_allclose(sde["time"].values, [0, 0.25, 0.5])  # saved at every ratio
    for r in (0.25, 0.5):
        for w in (8, 16, 32):
            other = open_cell(conv_store, "sde", ratio=r, width=w)
            np.testing.assert_array_equal(other["V"].values, sde["V"].values)
            fin = open_cell(conv_store, "finite", ratio=r, width=w)
            assert int(fin.depth.values[-1]) == w // 2  # to max ratio · n, saved at each ratio
            np.testing.assert_array_equal(
                fin["V"].values, open_cell(conv_store, "finite", ratio=0.25, width=w)["V"].values)
    # the cell files hold only the summary (the samples are stored once)
    import h5py

    for f in os.listdir(os.path.join(conv_store, "cells")):
        with h5py.File(os.path.join(conv_store, "cells", f)) as h:
            assert "sde" not in h and "finite" not in h
    ds = open_sweep(conv_store)
    assert ds["ks_boot"].dims == ("ratio", "width", "stat", "boot")
    assert ds.sizes["boot"] == 40 and np.isfinite(ds["ks_boot"]).all()
    # the slope interval drawn = fit_slope on the stored replicates
    fits = convergence_fits(ds, "corr:0,1", "ks")
    d = ds.sel(stat="corr:0,1")
    for fit in fits.itertuples():
        y = d.ks.sel(ratio=fit.ratio).values
        boot = d.ks_boot.sel(ratio=fit.ratio).transpose("boot", "width").values
        ref = fit_slope([8, 16, 32], y, boot)
        assert (fit.slope, fit.ci_low, fit.ci_high) == (ref["slope"], ref["ci_low"],
                                                        ref["ci_high"])
        assert fit.ci_low < fit.slope < fit.ci_high
    ax = plot_convergence(ds, "corr:0,1", "ks").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("boot. se" in t and "3 widths" in t for t in labels) == 2
    assert any("n^{-1/2}" in t for t in labels) and any("noise floor" in t for t in labels)


def test_corrupt_shared_sample_recomputes_its_cells(conv_store, tmp_path):
    import shutil

    store = str(tmp_path / "c")
    shutil.copytree(conv_store, store)
    reference = open_sweep(store)
    fin = sorted(f for f in os.listdir(os.path.join(store, "shared")) if f.startswith("finite"))
    _corrupt(os.path.join(store, "shared", fin[0]))
    res = run_sweep(parse_config(CONV), store, resume=True, inline=True, progress=False,
                    log=lambda s: None)
    assert (res["computed"], res["skipped"]) == (2, 4)  # the two ratios of that width
    xr.testing.assert_equal(open_sweep(store), reference)


def test_convergence_from_a_store_without_replicates_has_a_t_interval(conv_store):
    ds = open_sweep(conv_store).drop_vars(["ks_boot", "w1_boot"])
    ax = plot_convergence(ds, "corr:0,1", "ks").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum("t interval" in t for t in labels) == 2


def test_share_and_boot_replicates_leave_other_configs_unchanged():
    """New keys are opt-in: a config without them has the same normalised form and seeds."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in CONV.items()}
    raw["sources"] = {"sde": {"paths": 400, "dt": 2.0 ** -7},
                      "finite": {"sampler": "reduced", "paths": 200}}
    raw["compare"] = {"n_boot": 40}
    cfg = parse_config(raw)
    assert "share" not in cfg["sources"]["sde"] and "boot_replicates" not in cfg["compare"]
    for spec in cells(cfg):
        assert set(spec["seeds"]) == {"sde", "finite", "ode", "boot"}
    assert len({s["seeds"]["sde"] for s in cells(cfg)}) == 6


def test_shared_samples_on_dask_equal_inline(conv_store, tmp_path):
    """Workers return the shared samples with each cell; the client stores each once."""
    store = str(tmp_path / "dask")
    run_sweep(parse_config(CONV), store, workers=1, progress=False, log=lambda s: None)
    xr.testing.assert_equal(open_sweep(store), open_sweep(conv_store))
    assert sorted(os.listdir(os.path.join(store, "shared"))) == sorted(
        os.listdir(os.path.join(conv_store, "shared")))
    for r, w in ((0.25, 8), (0.5, 32)):
        for src in ("sde", "finite"):
            np.testing.assert_array_equal(open_cell(store, src, ratio=r, width=w)["V"].values,
                                          open_cell(conv_store, src, ratio=r, width=w)["V"].values)
