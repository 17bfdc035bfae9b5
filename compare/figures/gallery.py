"""The figure gallery (``covsde figures``): the docs/theory.md §7 figures the shaped models allow.

Every figure is drawn from datasets SAVED under ``out_dir/data``. A dataset is simulated (or
sampled) only when its file is missing or its attrs do not match the requested parameters
(``gallery_request``, plus the native attrs source / arch / model parameters / seed /
paths / t_end / dt / width); re-plotting never resimulates. Figures (PNG and PDF, parameters
in the title; a caption per figure in ``captions.md``):

- ``distribution_rho01`` / ``distribution_V00``: histogram + KDE of ρ_01 and V_00 at
  d/n ∈ {0.25, 0.5, 1, 2}, finite reduced network vs SDE vs ODE (shaped block of the demo).
- ``trajectories``: median and 10–90 % band of ρ_01 vs t for SDE, ODE and finite network.
- ``convergence``: KS and W1 (ρ_01) finite-vs-SDE vs width n, log-log, several d/n
  (arch=mlp, where the finite-n effect is visible: docs/theory.md §6.3), with the noise floor and
  the slope fitted over all widths with its 95 % bootstrap interval. The grid is a covsde
  sweep (:meth:`Gallery.convergence_config`, STORE ``data/convergence_sweep``, run in this
  process, resumed) drawn by :func:`compare.figures.sweep.plot_convergence`, the function
  of ``covsde figures --sweep``.
- ``weak_error``: the weak error E f(finite) − E f(SDE) vs n with intervals and fitted rates
  (Li–Nica–Roy MLP; :mod:`compare.figures.weak_error`, saved as ``data/weak_error.json``).
- ``stability``: the SDE's own blow-up probability P(τ ≤ T) over a (γ, τ0) grid
  (arch=attention, T = 1), converged in dt with the SPD scheme, as a heat map, and
  ``stability.csv``: a sweep with source ``blowup`` (STORE ``data/stability_sweep``)
  drawn by :func:`compare.figures.sweep.plot_stability`.

Censoring (everywhere): statistics over the paths alive at each time; dead fractions are
printed in the legends (alive counts) and in the tables.

Sizes: ``full`` (minutes), ``quick`` (< ~3 min on 2 cores) and ``tiny`` (tests only).
Seeds: dataset k of a run with seed S uses ``SeedSequence([S, k])`` (k fixed per dataset),
so every dataset has its own independent stream.
"""
import json
import os

import pandas as pd

from sde.errors import CovsdeInputError
from sde.initial import equicorrelated
from sde.models import ShapedBlock

from .gallery_base import GalleryBase, check_out_dir
from .gallery_block import BlockFigures
from .gallery_sizes import _SEED_INDEX, CONV_RATIOS, FIGURES, OUTPUTS, SIZES, derived_seed
from .gallery_sweeps import SweepFigures
from .style import COLORS
from .sweep import fit_slope


class Gallery(BlockFigures, SweepFigures, GalleryBase):
    """Builds the datasets (when missing) and the figures under ``out_dir``: one method per
    name of :data:`FIGURES`."""

    def _collapse(self, name):
        from .collapse import draw_collapse_figure

        draw_collapse_figure(name, self.size if self.size in ("tiny", "quick") else "full",
                             self.seed, self._save)

    def weak_error(self):
        """Weak errors E f(finite) − E f(SDE) vs width (:mod:`compare.figures.weak_error`)."""
        from .weak_error import draw_weak_error

        draw_weak_error(self)

    def rank_collapse(self):
        self._collapse("rank_collapse")

    def masks_layernorm(self):
        self._collapse("masks_layernorm")

    def similarity_removal(self):
        self._collapse("similarity_removal")

    def espa_kernel(self):
        self._collapse("espa_kernel")

    def doubly_exponential(self):
        self._collapse("doubly_exponential")

    def collapse_rate_diameter(self):
        self._collapse("collapse_rate_diameter")

    def ln_equilibria(self):
        self._collapse("ln_equilibria")


    # ---------------------------------------------------------------- masks (§3.5)
    def masked_positions(self):
        """ρ_{0,j} and V_jj against token position j: causal vs complete mask, SDE vs the
        reduced finite network, at d/n = 0.25 and 1."""
        from .masked import MASKED_BLOCK, plot_masked_positions

        c = self.cfg
        m, width, dt = c["masked_m"], c["masked_width"], 0.01
        V0 = equicorrelated(m, MASKED_BLOCK["rho0"])
        runs = {}
        for mask in ("complete", "causal"):  # the same seeds for both masks
            model = ShapedBlock(MASKED_BLOCK["gamma"], MASKED_BLOCK["tau0"], mask=mask)
            runs[(mask, "SDE")] = self._sde(f"masked_sde_{mask}", model, V0, 1.0, dt,
                                            c["masked_sde_paths"], _SEED_INDEX["masked_sde"],
                                            save_every=25, method="spd")
            runs[(mask, "finite")] = self._finite(f"masked_finite_{mask}", model, V0, width,
                                                  1.0, c["masked_fin_paths"],
                                                  _SEED_INDEX["masked_finite"], width // 4)
        what = (f"shaped block, γ = {MASKED_BLOCK['gamma']:g}, τ0 = {MASKED_BLOCK['tau0']:g}, "
                f"m = {m}, ρ0 = {MASKED_BLOCK['rho0']:g}")
        paths = (f"SDE {c['masked_sde_paths']} paths (SPD, dt = {dt:g}), finite n = {width}, "
                 f"{c['masked_fin_paths']} paths (reduced sampler)")
        fig = plot_masked_positions(runs, title=f"{what}: causal vs complete mask\n{paths}")
        self._save(fig, "masked_positions",
                   f"Median and 10–90 % band of ρ_0j (top) and V_jj (bottom, log scale) "
                   f"against the token position j at d/n = 0.25 and 1, for the causal and the "
                   f"complete attention mask (docs/theory.md §3.5): covariance SDE (lines, "
                   f"bands; SPD scheme, so a dead SDE path blew up) and finite network "
                   f"(markers, bars). {what}; {paths}. One censoring rule for both sides, "
                   f"the one of covsde compare: a path counts at t if V is finite and "
                   f"max|V_ab| <= 1e4 at every saved time up to t (saved every d/n = 0.25). "
                   f"V_jj: quantiles of the whole law, a censored path counting as +inf (a "
                   f"band end above the counted fraction is not drawn); ρ_0j: quantiles over "
                   f"counted paths. Legends: each side's censored fraction at that d/n. "
                   f"Seed {self.seed}.")

    def masked_stability_table(self):
        """Blow-up probability P(τ ≤ 1) of the shaped-attention SDE, converged in dt (SPD
        scheme, coupled runs), over (γ, τ0) for the complete, sliding (w = 1) and causal
        masks: a table (one row per mask, γ, τ0; :func:`.masked.stability_rows`), saved as
        ``data/masked_stability.json`` and reused while the parameters match."""
        from .masked import STABILITY_MASKS, stability_rows

        c = self.cfg
        request = dict(m=c["masked_stab_m"], gammas=list(c["masked_stab_gammas"]),
                       tau0s=list(c["masked_stab_taus"]), n_paths=c["masked_stab_paths"],
                       seed=derived_seed(self.seed, _SEED_INDEX["masked_stab"]), t_end=1.0,
                       dt0=c["masked_stab_dt0"], max_halvings=c["masked_stab_halvings"],
                       rho0=0.2, method="spd")
        path = os.path.join(self.data_dir, "masked_stability.json")
        if os.path.exists(path):
            with open(path) as fh:
                saved = json.load(fh)
            if saved.get("request") == request:
                self.log("  reuse   data/masked_stability.json")
                self.reused.append(path)
                return pd.DataFrame(saved["rows"])
        rows = []
        for label, kw in STABILITY_MASKS.items():
            rows += [dict(mask=label, **r) for r in stability_rows(
                kw, request["gammas"], request["tau0s"], m=request["m"], rho0=request["rho0"],
                t_end=request["t_end"], dt0=request["dt0"], n_paths=request["n_paths"],
                seed=request["seed"], max_halvings=request["max_halvings"], progress=False)]
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"request": request, "rows": rows}, fh)
        os.replace(tmp, path)
        self.generated.append(path)
        self.log("  wrote   data/masked_stability.json")
        return pd.DataFrame(rows)

    def masked_stability(self):
        from sde.blowup import rule_phrase

        from .masked import plot_stability_maps

        c = self.cfg
        table = self.masked_stability_table()
        self._csv(table, "masked_stability.csv")
        for label, rows in table.groupby("mask", sort=False):
            self.log(f"  mask {label}: P(τ ≤ 1) from {rows.probability.min():.3f} to "
                     f"{rows.probability.max():.3f} over the (γ, τ0) grid, "
                     f"{int((~rows.converged.astype(bool)).sum())} of {len(rows)} cells "
                     f"unsettled")
        n = c["masked_stab_paths"]
        n_nc = int((~table["converged"].astype(bool)).sum())
        dts = ", ".join(sorted({f"{d:g}" for d in table["dt"]}, key=float, reverse=True))
        what = (f"shaped attention SDE, m = {c['masked_stab_m']}, ρ0 = 0.2, one head, T = 1, "
                f"SPD scheme, {n} coupled paths per cell")
        fig = plot_stability_maps(
            table, title=f"{what}: blow-up probability P(τ ≤ T) % [95 % Clopper–Pearson], "
                         f"converged in dt\n(dt halved from {c['masked_stab_dt0']:g} "
                         f"{rule_phrase()})"
                         + ("; grey hatched = unsettled" if n_nc else ""))
        self._save(fig, "masked_stability",
                   f"Blow-up probability P(τ ≤ T), T = 1, of the shaped-attention SDE over "
                   f"(γ, τ0) with the complete, sliding (w = 1) and causal masks "
                   f"(docs/theory.md §3.5); {what}. Each cell is sde.blowup.blowup_probability: "
                   f"the SPD scheme never leaves the PD cone, so every dead path blew up (|V_ab| "
                   f"> 1e4 or non-finite); dt is halved from {c['masked_stab_dt0']:g} (at most "
                   f"{c['masked_stab_halvings']} times) on the same Brownian paths "
                   f"{rule_phrase()}, so a settled value is a property of the SDE, not of "
                   f"the step (dt reached here: {dts}). "
                   + (f"{n_nc} of {len(table)} cells could not be settled at {n} paths (grey, "
                      f"hatched: the value shown is the finest step's, not a converged one). "
                      if n_nc else "Every cell converged. ")
                   + f"One colour scale for the three maps. Table with the whole sequence "
                   f"(P@dt): masked_stability.csv. Seed {self.seed}.")
        return table


def make_figures(out_dir, size="quick", seed=0, only=None, log=print):
    """Build the gallery under ``out_dir`` (its parent must exist); return the files written.

    ``only``: subset of :data:`FIGURES` (default all). ``log``: a callable for progress lines.
    """
    only = tuple(FIGURES if only is None else only)
    for name in only:
        if name not in FIGURES:
            raise CovsdeInputError(f"unknown figure {name!r} (choose from {', '.join(FIGURES)})")
    check_out_dir(out_dir)
    return Gallery(out_dir, size=size, seed=seed, log=log).run(only)


__all__ = ["FIGURES", "OUTPUTS", "SIZES", "CONV_RATIOS", "COLORS", "Gallery", "check_out_dir",
           "derived_seed", "fit_slope", "make_figures"]
