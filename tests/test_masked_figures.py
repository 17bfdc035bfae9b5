"""compare/figures/masked.py: the plot functions draw from datasets, take an optional ax and
return the Figure; importing the module does not select a matplotlib backend."""
import re
import subprocess
import sys

import numpy as np
import pytest

import finite
import sde


def test_import_does_not_select_backend():
    code = ("import matplotlib, compare.figures.masked as f; "
            "import sys; sys.exit('matplotlib.pyplot' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plot_positions_small(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compare.figures.masked import plot_masked_positions, plot_positions, position_quantiles

    V0 = sde.equicorrelated(8, 0.2)   # m = 8: a lane kernel the suite compiles anyway
    runs = {}
    for mask in ("complete", "causal"):
        model = sde.ShapedBlock(0.5, 1.0, mask=mask)
        runs[(mask, "SDE")] = sde.simulate(model, V0, t_end=0.5, dt=0.05, n_paths=200, seed=0)
        runs[(mask, "finite")] = finite.sample(model, V0, width=16, n_paths=50, seed=1,
                                               t_end=0.5)
    q = position_quantiles(runs[("causal", "SDE")], 0.5, "rho0", 1e4)
    assert q.shape == (3, 8) and np.allclose(q[:, 0], 1.0)
    fig, ax = plt.subplots()
    assert plot_positions(runs, 0.5, "diag", ax=ax) is fig
    fig2 = plot_masked_positions(runs, times=(0.25, 0.5))
    fig2.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
    plt.close("all")


def test_position_quantiles_count_censored_paths_as_off_the_top():
    """V_jj quantiles are those of the whole law under the common censoring rule: a dead path
    and a path that passed the bound at an earlier saved time count as +inf, so they raise
    the median (control: over survivors only it would be lower) and a quantile level above
    the counted fraction is NaN; ρ_0j is taken over counted paths."""
    import xarray as xr

    from compare.figures.masked import censored_fraction, position_quantiles

    n, m = 10, 2
    V = np.zeros((n, 2, m, m))
    V[:, :, 0, 0] = V[:, :, 1, 1] = np.arange(1.0, n + 1)[:, None]
    V[:, :, 0, 1] = V[:, :, 1, 0] = 0.5
    V[8, 1] = np.nan                  # dead at t = 1
    V[9, 0, 0, 0] = 2e4               # passed the bound at t = 0.5, finite again at t = 1
    ds = xr.Dataset({"V": (("path", "time", "token_a", "token_b"), V)},
                    coords={"time": [0.5, 1.0]})
    q = position_quantiles(ds, 1.0, "diag", 1e4)
    assert censored_fraction(ds, 1.0, 1e4) == pytest.approx(0.2)
    assert np.all(q[1] == 5.0)        # the 5th of [1 … 8, +inf, +inf]
    assert q[1, 0] != np.median(np.arange(1.0, 9.0))  # control: survivors-only median 4.5
    assert np.all(np.isnan(q[2]))     # the 0.9 quantile is off the top
    r = position_quantiles(ds, 1.0, "rho0", 1e4)
    assert r.shape == (3, m) and np.allclose(r[:, 0], 1.0)


def test_masked_figures_in_the_gallery(tmp_path, capsys):
    """``covsde figures --only masked_positions --only masked_stability``: both figures, the
    table, captions; every line printed is labelled (no bare matrices); a re-plot reuses the
    saved datasets and the blow-up table (converged in dt, SPD)."""
    import pandas as pd

    from compare.cli import main

    out = tmp_path / "figs"
    argv = ["figures", "--size", "tiny", "--out", str(out), "--only", "masked_positions",
            "--only", "masked_stability"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    for stem in ("masked_positions", "masked_stability"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.pdf").exists()
    table = pd.read_csv(out / "masked_stability.csv")
    assert set(table["mask"]) == {"complete", "sliding w = 1", "causal"}
    assert len(table) == 3 * 2 * 2
    assert (table["method"] == "spd").all() and table["probability"].between(0, 1).all()
    assert ((table["ci95_low"] <= table["probability"])
            & (table["probability"] <= table["ci95_high"])).all()
    # a cell is converged exactly when its status says so; the sequence names every dt run
    assert ((table["status"] == "converged") == table["converged"]).all()
    assert all(len(seq.split()) >= 2 for seq in table["sequence"])
    assert "masked_positions" in (out / "captions.md").read_text()
    for line in lines:  # a label before any number: no unlabelled matrix rows
        assert not re.fullmatch(r"[\s\[\]\d.eE+-]+", line), line
    assert main(argv) == 2  # existing figures are refused without --force
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    again = capsys.readouterr().out
    assert "making" not in again and "reuse   data/masked_stability.json" in again
