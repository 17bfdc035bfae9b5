"""The main job (``covsde demo`` / ``make demo``): the default shaped block at several d/n.

SDE and ODE (dt = 0.01, 10⁴ paths) against reduced finite networks (n = 200, 4000 paths)
for d/n ∈ {0.25, 0.5, 0.75, 1} (at d/n = 2 about 5 % of SDE paths die, which would bias
the panel). Beside the theory's SDE it runs a control SDE with a perturbed parameter
(γ × 1.15, :data:`CONTROL`): agreement with the theory means something only because the same
comparison rejects the control (:mod:`compare.power`). Writes, under ``out_dir``: the
datasets (``sde.nc``, ``control.nc``, ``ode.nc``, ``finite.nc``), one overlay figure (ρ_01
and V_00, one column per ratio; the control's curve too), a trajectories figure, the
distance table (``distances.csv`` and ``distances.txt``) and the power table
(``power.csv``: the KS test of the network against the theory and against the control).

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
from .figures.overlay import plot_overlay
from .figures.style import plot_trajectories, save_figure
from .power import DEFAULT_ALPHA, THEORY, perturbed_gamma, power_summary, power_table

DEMO_MODEL = dict(gamma=1 / math.sqrt(8), tau0=1.0, c_plus=0.0, c_minus=-1.0)
DEMO_V0 = dict(m=3, rho0=0.2)
DEMO_RATIOS = (0.25, 0.5, 0.75, 1.0)
PARAMS_TEXT = "shaped block, m = 3, ρ0 = 0.2, γ = 1/√8, τ0 = 1, c₊ = 0, c₋ = −1"
#: the control SDE: the theory's model with γ × 1.15 (name, factor). At the demo's parameters
#: the MLP drift off (c₋ = 0) is no control: its SDE and the theory's differ by KS ≈ 0.018 at
#: t = 1 between two samples of 2·10⁴ paths, the noise level; γ × 1.15 differs by ≈ 0.05–0.07
#: from t = 0.25 on (it also changes the noise's scale).
CONTROL = ("control: γ × 1.15", 1.15)
DEMO_FINITE_PATHS = 4000
OUTPUTS = ("sde.nc", "control.nc", "ode.nc", "finite.nc", "trajectories.png", "overlay.png",
           "distances.csv", "distances.txt", "power.csv")


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


def run_demo(out_dir, n_paths=10_000, seed=0, dt=0.01, width=200,
             finite_paths=DEMO_FINITE_PATHS, ratios=DEMO_RATIOS, n_boot=DEFAULT_N_BOOT,
             alpha=DEFAULT_ALPHA):
    """Run the demo; yields one line per step (summaries, files written, the tables).

    Every output appears in ``out_dir`` together at the end (see the module doc). The last
    lines are the power summary: whether the network rejects the theory's SDE and the
    control's (KS, Bonferroni over each comparison's rows at family-wise ``alpha``).
    """
    from finite import sample

    with staging_dir(out_dir) as tmp:
        model = ShapedBlock(**DEMO_MODEL)
        V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
        t_end = max(ratios)
        control_name, factor = CONTROL
        control = perturbed_gamma(model, factor)
        sde_ds = simulate(model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed)
        ctl_ds = simulate(control, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed + 2)
        ode_ds = simulate(model, V0, t_end=t_end, dt=dt, seed=seed, method="ode")
        fin_ds = sample(model, V0, width=width, n_paths=finite_paths, seed=seed + 1,
                        t_end=t_end, sampler="reduced", save_every=max(1, width // 100))
        lines = []
        for name, ds in (("sde", sde_ds), ("control", ctl_ds), ("ode", ode_ds),
                         ("finite", fin_ds)):
            write_dataset(ds, os.path.join(tmp, f"{name}.nc"))
            lines.append(f"{summary_line(ds)} -> {os.path.join(out_dir, name + '.nc')}")
        yield from lines
        labels = {"SDE": sde_ds, "ODE": ode_ds, f"finite n = {width}": fin_ds}
        ctl_label = f"SDE {control_name} (γ = {control.gamma:.3g})"
        fig = plot_trajectories(labels, title=f"{PARAMS_TEXT}; SDE {n_paths} paths, ODE, "
                                              f"dt = {dt}; finite reduced sampler n = {width}, "
                                              f"{finite_paths} paths")
        save_figure(fig, os.path.join(tmp, "trajectories.png"), "--out")
        import matplotlib.pyplot as plt

        # ρ is bounded: one x-range per row; V_00 is heavy-tailed: each time its own x-range
        fig = plt.figure(figsize=(3.3 * len(ratios) + 0.6, 7.8), constrained_layout=True)
        axes = fig.subplots(2, len(ratios), squeeze=False)
        for ax in axes[0][1:]:
            ax.sharex(axes[0][0])
            ax.sharey(axes[0][0])
        over = {**labels, ctl_label: ctl_ds}
        plot_overlay(over, "corr:0,1", list(ratios), axes=axes[0])
        plot_overlay(over, "V:0,0", list(ratios), axes=axes[1], legend=False)
        fig.suptitle(textwrap.fill(f"{PARAMS_TEXT}; SDE {n_paths} paths, finite n = {width}, "
                                   f"{finite_paths} paths; the control SDE has γ × {factor:g} "
                                   f"(the comparison must reject it: power.csv)", 110),
                     fontsize=9)
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
        power = power_table(fin_ds, {THEORY: sde_ds, control_name: ctl_ds},
                            ["corr:0,1", "V:0,0"], list(ratios), alpha=alpha, seed=seed,
                            theory_distances=df)
        power.to_csv(os.path.join(tmp, "power.csv"), index=False)
        summary = [f"power (KS of the finite network against each SDE; {power.attrs['rule']}):"]
        summary += [f"  {line}" for line in power_summary(power)]
    for name in ("trajectories.png", "overlay.png", "distances.csv", "distances.txt",
                 "power.csv"):
        yield f"wrote {os.path.join(out_dir, name)}"
    yield table
    yield from summary
