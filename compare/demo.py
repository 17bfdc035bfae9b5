"""The main job (``covsde demo`` / ``make demo``): the default shaped block at several d/n.

SDE and ODE (dt = 0.01, 10⁴ paths) against reduced finite networks (n = 200, 2000 paths)
for d/n ∈ {0.25, 0.5, 0.75, 1} (at d/n = 2 about 5 % of SDE paths die, which would bias
the panel). Writes, under ``out_dir``: the three datasets, one overlay figure (ρ_01 and V_00,
one column per ratio, shared axes), a trajectories figure and the distance table
(``distances.csv`` and ``distances.txt``).

The output set is built in a temporary directory next to ``out_dir`` and moved into it only
when complete: an interrupted demo leaves no half-written set (and no temporary directory).
"""
import contextlib
import math
import os
import shutil
import tempfile
import textwrap
import warnings

from sde import ShapedBlock, equicorrelated, simulate
from sde.io import write_dataset
from sde.schema import summary_line

from .cli.compare import format_table
from .distances import DEFAULT_N_BOOT, distances
from .figures.style import plot_trajectories, save_figure
from .figures.overlay import plot_overlay

DEMO_MODEL = dict(gamma=1 / math.sqrt(8), tau0=1.0, c_plus=0.0, c_minus=-1.0)
DEMO_V0 = dict(m=3, rho0=0.2)
DEMO_RATIOS = (0.25, 0.5, 0.75, 1.0)
PARAMS_TEXT = "shaped block, m = 3, ρ0 = 0.2, γ = 1/√8, τ0 = 1, c₊ = 0, c₋ = −1"
OUTPUTS = ("sde.nc", "ode.nc", "finite.nc", "trajectories.png", "overlay.png",
           "distances.csv", "distances.txt")


@contextlib.contextmanager
def staging_dir(out_dir):
    """A temporary directory beside ``out_dir`` (same file system); on success its files
    are moved into ``out_dir`` (each by an atomic rename), on any failure or Ctrl-C it is
    removed. Yields the staging path."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.partial-",
                           dir=parent)
    try:
        yield tmp
        os.makedirs(out_dir, exist_ok=True)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_demo(out_dir, n_paths=10_000, seed=0, dt=0.01, width=200, finite_paths=2000,
             ratios=DEMO_RATIOS, n_boot=DEFAULT_N_BOOT):
    """Run the demo; yields one line per step (summaries, files written, the table).

    Every output appears in ``out_dir`` together at the end (see the module doc).
    """
    from finite import sample

    with staging_dir(out_dir) as tmp:
        model = ShapedBlock(**DEMO_MODEL)
        V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
        t_end = max(ratios)
        sde_ds = simulate(model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed)
        ode_ds = simulate(model, V0, t_end=t_end, dt=dt, seed=seed, method="ode")
        fin_ds = sample(model, V0, width=width, n_paths=finite_paths, seed=seed + 1,
                        t_end=t_end, sampler="reduced", save_every=max(1, width // 100))
        lines = []
        for name, ds in (("sde", sde_ds), ("ode", ode_ds), ("finite", fin_ds)):
            write_dataset(ds, os.path.join(tmp, f"{name}.nc"))
            lines.append(f"{summary_line(ds)} -> {os.path.join(out_dir, name + '.nc')}")
        yield from lines
        labels = {"SDE": sde_ds, "ODE": ode_ds, f"finite n = {width}": fin_ds}
        fig = plot_trajectories(labels, title=f"{PARAMS_TEXT}; SDE {n_paths} paths, ODE, "
                                              f"dt = {dt}; finite reduced sampler n = {width}, "
                                              f"{finite_paths} paths")
        save_figure(fig, os.path.join(tmp, "trajectories.png"), "--out")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, len(ratios), figsize=(3.3 * len(ratios) + 0.6, 7.4),
                                 squeeze=False, sharex="row", sharey="row",
                                 constrained_layout=True)
        plot_overlay(labels, "corr:0,1", list(ratios), axes=axes[0])
        plot_overlay(labels, "V:0,0", list(ratios), axes=axes[1], legend=False)
        fig.suptitle(textwrap.fill(f"{PARAMS_TEXT}; SDE {n_paths} paths, finite n = {width} "
                                   f"{finite_paths} paths", 100), fontsize=9)
        save_figure(fig, os.path.join(tmp, "overlay.png"), "--out")
        with warnings.catch_warnings():  # stated in the table instead
            warnings.simplefilter("ignore")
            df = distances(fin_ds, sde_ds, stats=["corr:0,1", "V:0,0"], times=list(ratios),
                           point=ode_ds, seed=seed, n_boot=n_boot)
        df.to_csv(os.path.join(tmp, "distances.csv"), index=False)
        table = format_table(df, f"finite n = {width}", "SDE")
        table += "".join(f"\nwarning: {note}" for note in df.attrs["warnings"])
        with open(os.path.join(tmp, "distances.txt"), "w") as fh:
            fh.write(table + "\n")
    for name in ("trajectories.png", "overlay.png", "distances.csv", "distances.txt"):
        yield f"wrote {os.path.join(out_dir, name)}"
    yield table
