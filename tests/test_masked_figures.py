"""compare/figures/masked.py: the plot functions draw from datasets, take an optional ax and
return the Figure; importing the module does not select a matplotlib backend."""
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
