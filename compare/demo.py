"""The main job (``covsde demo`` / ``make demo``): the default shaped block at several d/n.

SDE and ODE (dt = 0.01, 10⁴ paths) against reduced finite networks (n = 200, 2000 paths)
for d/n ∈ {0.25, 0.5, 0.75, 1} (at d/n = 2 about 5 % of SDE paths die, which would bias
the panel). Writes, under ``out_dir``: the three datasets, one overlay figure per ratio,
a trajectories figure and the distance table (``distances.csv`` and ``distances.txt``).
"""
import math
import os
import textwrap

from sde import ShapedBlock, equicorrelated, simulate
from sde.io import write_dataset
from sde.schema import summary_line

from .cli_compare import format_table
from .distances import distances
from .figures import plot_trajectories
from .overlay import plot_overlay

DEMO_MODEL = dict(gamma=1 / math.sqrt(8), tau0=1.0, c_plus=0.0, c_minus=-1.0)
DEMO_V0 = dict(m=3, rho0=0.2)
DEMO_RATIOS = (0.25, 0.5, 0.75, 1.0)
PARAMS_TEXT = "shaped block, m = 3, ρ0 = 0.2, γ = 1/√8, τ0 = 1, c₊ = 0, c₋ = −1"


def run_demo(out_dir, n_paths=10_000, seed=0, dt=0.01, width=200, finite_paths=2000,
             ratios=DEMO_RATIOS):
    """Run the demo; yields one line per step (summaries, files written, the table)."""
    from finite import sample

    os.makedirs(out_dir, exist_ok=True)
    model = ShapedBlock(**DEMO_MODEL)
    V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
    t_end = max(ratios)
    sde_ds = simulate(model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed)
    ode_ds = simulate(model, V0, t_end=t_end, dt=dt, seed=seed, method="ode")
    fin_ds = sample(model, V0, width=width, n_paths=finite_paths, seed=seed + 1, t_end=t_end,
                    sampler="reduced", save_every=max(1, width // 100))
    for name, ds in (("sde", sde_ds), ("ode", ode_ds), ("finite", fin_ds)):
        path = os.path.join(out_dir, f"{name}.nc")
        write_dataset(ds, path)
        yield f"{summary_line(ds)} -> {path}"
    labels = {f"SDE ({n_paths} paths)": sde_ds, "ODE": ode_ds,
              f"finite n = {width} ({finite_paths} paths)": fin_ds}
    fig = os.path.join(out_dir, "trajectories.png")
    plot_trajectories(labels, fig, title=f"{PARAMS_TEXT}; SDE/ODE dt = {dt}, finite reduced "
                                         f"sampler n = {width}")
    yield f"wrote {fig}"
    for r in ratios:
        fig = os.path.join(out_dir, f"overlay_dn{r:g}.png")
        plot_overlay(labels, "corr:0,1", [r], fig, xlabel=r"correlation $\rho_{01}$",
                     title=textwrap.fill(f"{PARAMS_TEXT}: ρ_01 at d/n = {r:g}", 50))
        yield f"wrote {fig}"
    df = distances(fin_ds, sde_ds, stats=["corr:0,1", "V:0,0"], times=list(ratios),
                   point=ode_ds, seed=seed)
    df.to_csv(os.path.join(out_dir, "distances.csv"), index=False)
    table = format_table(df, f"finite n = {width}", "SDE")
    with open(os.path.join(out_dir, "distances.txt"), "w") as fh:
        fh.write(table + "\n")
    yield table
