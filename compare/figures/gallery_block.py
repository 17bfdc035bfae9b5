"""Gallery figures of the demo's shaped block: distributions and trajectories of finite
networks vs SDE vs ODE."""
import textwrap

from sde.initial import equicorrelated
from sde.models import ShapedBlock

from ..demo import DEMO_MODEL, DEMO_V0
from .gallery_base import _dead_at, _fine_save_every, _nb, block_text
from .gallery_sizes import _SEED_INDEX, DIST_RATIOS
from .overlay import plot_overlay
from .style import plot_trajectories


class BlockFigures:
    """``distribution`` and ``trajectories`` (a mixin of :class:`~compare.figures.gallery.Gallery`)."""

    def block_datasets(self):
        c = self.cfg
        model = ShapedBlock(**DEMO_MODEL)
        V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
        t_end, dt, n = max(DIST_RATIOS), 0.01, c["dist_width"]
        sde = self._sde("block_sde", model, V0, t_end, dt, c["dist_sde_paths"],
                        _SEED_INDEX["dist_sde"], save_every=5)
        ode = self._sde("block_ode", model, V0, t_end, dt, 1, _SEED_INDEX["dist_ode"],
                        save_every=5, method="ode")
        fin = self._finite(f"block_finite_n{n}", model, V0, n, t_end, c["dist_fin_paths"],
                           _SEED_INDEX["dist_finite"], _fine_save_every(n, DIST_RATIOS))
        labels = {"SDE": sde, "ODE": ode, f"finite n = {n}": fin}
        paths = (f"SDE {sde.attrs['n_paths']} paths, finite {fin.attrs['n_paths']} paths "
                 f"(reduced sampler, n = {n}), SDE/ODE dt = {dt}")
        return labels, paths, n

    def distribution(self):
        labels, paths, n = self.block_datasets()
        sde = labels["SDE"]
        dead = {r: _dead_at(sde, r) for r in DIST_RATIOS}
        dead_text = ", ".join(f"{100 * d:.2g} % at t = {r:g}" for r, d in dead.items())
        for stat, stem, name in (("corr:0,1", "distribution_rho01", "ρ_01"),
                                 ("V:0,0", "distribution_V00", "V_00")):
            title = _nb(f"{name}: {block_text()}\n{paths}; SDE dead: {dead_text}")
            fig = plot_overlay(labels, stat, list(DIST_RATIOS), title=title)
            cut = ("" if stat.startswith("corr") else
                   " Each panel's x axis shows that time's pooled 0.5–99.5 % quantile range "
                   "(V_00 is heavy-tailed and its tail grows with t: SDE paths can blow up); "
                   "densities stay normalised over all alive paths and each panel's title "
                   "states the share outside.")
            kde = ("Gaussian KDE reflected at ρ = ±1 (no boundary drop)" if stat.startswith(
                "corr") else "Gaussian KDE reflected at V_00 = 0")
            self._save(fig, stem,
                       f"Histograms (outlined steps on bins shared by all sources of a panel) "
                       f"and {kde} of {name} at depth-to-width ratio d/n = t ∈ {{0.25, 0.5, "
                       f"1, 2}}: finite network (reduced sampler, width n = {n}) vs its "
                       f"covariance SDE (Euler–Maruyama) vs the width-first ODE limit (dashed "
                       f"line). "
                       + ("Panels share both axes. " if stat.startswith("corr") else
                          "Each panel has its own axes and bins. ")
                       + f"{block_text()}; {paths}. Over paths "
                       f"alive at each t; SDE dead fraction {dead_text}.{cut} "
                       f"Seed {self.seed}.")

    def trajectories(self):
        labels, paths, n = self.block_datasets()
        title = textwrap.fill(_nb(f"ρ_01 vs t = d/n. {block_text()}. {paths}"), 80)
        self._save(plot_trajectories(labels, title=title), "trajectories",
                   f"Median (thick line) and 10–90 % band (hatched, outlined) of the "
                   f"correlation ρ_01 against t = depth/width for the covariance SDE, its ODE "
                   f"(width-first) limit and the finite network (reduced sampler, n = {n}); "
                   f"{block_text()}; {paths}. Over paths alive at each t. Seed {self.seed}.")

