"""compare/figures/masked.py: the plot functions draw from datasets, take an optional ax and
return the Figure; importing the module does not select a matplotlib backend."""
import re
import subprocess
import sys

import numpy as np

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
    q = position_quantiles(runs[("causal", "SDE")], 0.5, "rho0")
    assert q.shape == (3, 8) and np.allclose(q[:, 0], 1.0)
    fig, ax = plt.subplots()
    assert plot_positions(runs, 0.5, "diag", ax=ax) is fig
    fig2 = plot_masked_positions(runs, times=(0.25, 0.5))
    fig2.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
    plt.close("all")


def test_masked_figures_in_the_gallery(tmp_path, capsys):
    """``covsde figures --only masked_positions --only masked_stability``: both figures, the
    table, captions; every line printed is labelled (no bare matrices); a re-plot reuses the
    saved datasets and the dead-fraction table."""
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
    assert len(table) == 3 * 2 * 2 and table["dead_fraction"].between(0, 1).all()
    assert "masked_positions" in (out / "captions.md").read_text()
    for line in lines:  # a label before any number: no unlabelled matrix rows
        assert not re.fullmatch(r"[\s\[\]\d.eE+-]+", line), line
    assert main(argv) == 2  # existing figures are refused without --force
    capsys.readouterr()
    assert main([*argv, "--force"]) == 0
    again = capsys.readouterr().out
    assert "making" not in again and "reuse   data/masked_stability.json" in again
