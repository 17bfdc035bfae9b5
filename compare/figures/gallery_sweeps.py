"""Gallery figures computed as covsde sweeps run in this process: convergence of finite
networks to the SDE with width, and the SDE's blow-up probability over (γ, τ0)."""
import os
import time

import matplotlib.pyplot as plt
import pandas as pd

from sde.errors import CovsdeInputError

from ..demo import DEMO_V0
from .gallery_base import _fmt
from .gallery_sizes import _SEED_INDEX, CONV_DT, CONV_RATIOS, STAB_T, derived_seed


class SweepFigures:
    """``convergence`` and ``stability`` (a mixin of :class:`~compare.figures.gallery.Gallery`)."""

    def _sweep(self, name, config):
        """Run (or resume) the sweep ``config`` into the STORE ``data/name`` and open it.

        Finished cells are skipped (``run_sweep(resume=True)``: a re-plot computes and
        writes nothing); a STORE made from other parameters (another size or seed) is
        removed and recomputed. The cells run in this process (``inline``: no Dask)."""
        import shutil

        from ..sweep import open_sweep, run_sweep
        from ..sweep.store import read_manifest
        from ..sweep.config import config_hash

        store = os.path.join(self.data_dir, name)
        if os.path.exists(store):
            try:
                same = read_manifest(store).get("config_hash") == config_hash(config)
            except CovsdeInputError:
                same = False
            if not same:
                self.log(f"  data/{name} does not match the requested parameters: "
                         f"regenerating")
                shutil.rmtree(store)
        t0 = time.perf_counter()
        res = run_sweep(config, store, resume=os.path.exists(store), inline=True,
                        progress=self.size == "full",
                        log=lambda line: self.log(f"  {line}") if "cell " in line[:5] else None)
        if res["computed"]:
            self.generated.append(store)
            self.log(f"  wrote   data/{name} (sweep STORE: {res['computed']} cells computed, "
                     f"{res['skipped']} already finished; {time.perf_counter() - t0:.1f} s)")
        else:
            self.reused.append(store)
            self.log(f"  reuse   data/{name} (sweep STORE, {res['skipped']} finished cells)")
        return open_sweep(store)

    def convergence_config(self):
        """The convergence grid as a sweep config (``compare.sweep.config``): shaped MLP,
        d/n × width; one SDE sample (dt = 2^-9, to the largest d/n, saved at each) shared by
        every cell, one finite sample per width (reduced sampler, to depth max d/n · n, saved
        at each d/n) shared by that width's cells; bootstrap replicates kept for the slope's
        interval."""
        from ..sweep.config import parse_config

        c = self.cfg
        return parse_config({
            "seed": derived_seed(self.seed, _SEED_INDEX["conv_sde"]),
            "stats": ["corr:0,1"],
            "model": {"arch": "mlp", "c_plus": 0.0, "c_minus": -1.0},
            "initial": {"tokens": DEMO_V0["m"], "rho0": DEMO_V0["rho0"]},
            "grid": {"ratio": list(CONV_RATIOS), "width": list(c["conv_widths"])},
            "sources": {"sde": {"paths": c["conv_sde_paths"], "dt": CONV_DT,
                                "share": ["ratio", "width"]},
                        "finite": {"sampler": "reduced", "paths": c["conv_fin_paths"],
                                   "share": ["ratio"]}},
            "compare": {"n_boot": c["n_boot"], "boot_replicates": True}})

    def convergence_table(self):
        """The convergence sweep (STORE ``data/convergence_sweep``) and its table: one row
        per (width, d/n) with the distances of ρ_01 (``compare.distances`` columns)."""
        ds = self._sweep("convergence_sweep", self.convergence_config())
        d = ds.sel(stat="corr:0,1")
        cols = [v for v in d.data_vars if set(d[v].dims) == {"ratio", "width"}
                and not v.startswith("seed_")]
        table = (d[cols].to_dataframe().reset_index()
                 .drop(columns=[c for c in ("stat",) if c in d[cols].coords])
                 .rename(columns={"ratio": "time"}))
        table.insert(2, "stat", "corr:0,1")
        table = table.sort_values(["width", "time"], ignore_index=True)
        return table, ds

    def convergence(self):
        from .sweep import convergence_fits, plot_convergence

        table, ds = self.convergence_table()
        self._csv(table, "convergence.csv")
        c = self.cfg
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), constrained_layout=True)
        for ax, key in zip(axes, ("ks", "w1")):
            name = key.upper()
            plot_convergence(ds, "corr:0,1", key, ax=ax,
                             title=rf"{name} distance of $\rho_{{01}}$, finite vs SDE at t = d/n")
            ax.set_xlabel("width n (finite network, reduced sampler)")
        fits = pd.concat([convergence_fits(ds, "corr:0,1", k) for k in ("ks", "w1")],
                         ignore_index=True)
        n_sde = int(ds["n_paths"].sel(source="sde").values.flat[0])
        fig.suptitle(f"Convergence to the SDE: shaped MLP (Li–Nica–Roy, ReLU c₊ = 0, c₋ = −1, "
                     f"no residual), m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}\n"
                     f"finite: reduced sampler, {c['conv_fin_paths']} paths per n; SDE: "
                     f"{n_sde} paths, dt = 2⁻⁹; seed {self.seed}", fontsize=9)
        self._save(fig, "convergence",
                   f"Two-sample KS and W1 distances between ρ_01 of finite shaped MLPs "
                   f"(Li–Nica–Roy, shaped ReLU c₊ = 0, c₋ = −1; reduced sampler, "
                   f"{c['conv_fin_paths']} paths per width, one sample per width saved at "
                   f"every d/n) and of the covariance SDE (Euler–Maruyama, dt = 2⁻⁹, {n_sde} "
                   f"paths, one sample saved at every d/n) against width n, at d/n ∈ "
                   f"{{{', '.join(_fmt(r) for r in CONV_RATIOS)}}}; m = {DEMO_V0['m']}, "
                   f"ρ0 = {_fmt(DEMO_V0['rho0'])}. Computed as a covsde sweep (one cell per "
                   f"(d/n, n) sharing those samples, STORE data/convergence_sweep, resumable; "
                   f"the same plotting "
                   f"function as covsde figures --sweep). Dotted: noise floor (mean distance "
                   f"over {c['n_boot']} permutations of the pooled sample: the level of two "
                   f"samples of one law). Lines: least-squares fit of log distance on log n "
                   f"over ALL widths (no selection on the outcome); legend: slope ± 1.96 "
                   f"bootstrap standard errors ({c['n_boot']} resamples of the paths of both "
                   f"sides, the SDE resample shared across widths). Points carry no interval: "
                   f"the plug-in distance is biased upward by about the floor, and points "
                   f"near the floor flatten the slope. Grey dashed: n^-1/2, drawn for "
                   f"orientation only: it is the predicted rate of the weak error of ρ_01 for "
                   f"c₊ + c₋ ≠ 0 (docs/theory.md §6.8), not of a distance between samples, "
                   f"which the noise floor bends; weak_error.png measures the rate. "
                   f"Table: convergence.csv. Seed {self.seed}.")
        return fits

    def stability_config(self):
        """The stability map as a sweep config: shaped attention over γ × τ0, T = 1, source
        ``blowup`` (P(τ ≤ T) converged in dt with the SPD scheme)."""
        from ..sweep.config import parse_config

        c = self.cfg
        return parse_config({
            "seed": derived_seed(self.seed, _SEED_INDEX["stab"]),
            "model": {"arch": "attention", "gamma": list(c["stab_gammas"]),
                      "tau0": list(c["stab_taus"]), "heads": 1},
            "initial": {"tokens": DEMO_V0["m"], "rho0": DEMO_V0["rho0"]},
            "grid": {"ratio": [STAB_T]},
            "sources": {"blowup": {"paths": c["stab_paths"], "dt0": c["stab_dt0"],
                                   "method": "spd", "max_halvings": c["stab_halvings"]}}})

    def stability_table(self):
        """The stability sweep (STORE ``data/stability_sweep``) and its table: one row per
        (γ, τ0) with the converged P(τ ≤ T), its interval, the dt reached and the counts at
        that dt."""
        from ..sweep.store import open_cell

        config = self.stability_config()
        ds = self._sweep("stability_sweep", config)
        b = config["sources"]["blowup"]
        store = os.path.join(self.data_dir, "stability_sweep")
        rows = []
        for g in self.cfg["stab_gammas"]:
            for tau in self.cfg["stab_taus"]:
                seq = open_cell(store, "blowup", ratio=STAB_T, gamma=g, tau0=tau)
                last = {k: seq[k].values[-1].item() for k in seq.data_vars}
                a = seq.attrs
                rows.append(dict(gamma=g, tau0=tau, T=STAB_T, method=b["method"],
                                 dt0=b["dt0"], dt=a["dt"], converged=bool(a["converged"]),
                                 n_levels=seq.sizes["level"], n_paths=last["n_paths"],
                                 n_dead=last["n_dead"], n_blew_up=last["n_blew_up"],
                                 n_left_cone=last["n_left_cone"], probability=a["probability"],
                                 ci95_low=a["ci_low"], ci95_high=a["ci_high"],
                                 sequence=" ".join(f"{p:.4g}@{d:g}" for p, d in zip(
                                     seq["probability"].values, seq["dt"].values))))
        return pd.DataFrame(rows), ds

    def stability(self):
        from sde.blowup import rule_phrase

        from .sweep import plot_stability

        table, ds = self.stability_table()
        self._csv(table, "stability.csv")
        b = self.stability_config()["sources"]["blowup"]
        n = b["paths"]
        n_nc = int((~table["converged"]).sum())
        dts = ", ".join(sorted({f"{d:g}" for d in table["dt"]}, key=float, reverse=True))
        fig = plot_stability(
            ds, title=f"Blow-up probability of the shaped-attention SDE: m = {DEMO_V0['m']}, "
                      f"ρ0 = {_fmt(DEMO_V0['rho0'])}, H = 1, T = {STAB_T:g}\n"
                      f"P(τ ≤ T) % [95 % Clopper–Pearson], converged in dt (SPD scheme, {n} "
                      f"coupled paths,\ndt halved from {b['dt0']:g} "
                      f"{rule_phrase(b['atol'], b['rtol'])};\ndt reached and Δ in % shown)"
                      + ("; grey hatched = unsettled" if n_nc else ""),
            colorbar_label=f"P(τ ≤ {STAB_T:g}) (%)")
        self._save(fig, "stability",
                   f"The shaped-attention SDE's own finite-time blow-up probability P(τ ≤ T), "
                   f"T = {STAB_T:g} (m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}, one "
                   f"head), over the (γ, τ0) grid: a covsde sweep with source blowup (STORE "
                   f"data/stability_sweep), each cell sde.blowup.blowup_probability with the "
                   f"SPD scheme (never leaves the PD cone, so every dead path blew up: |V_ab| "
                   f"> 1e4 or non-finite), {n} paths run at every step size on the same "
                   f"Brownian paths (coupled: each coarse increment the sum of the fine "
                   f"ones), dt halved from {b['dt0']:g} {rule_phrase(b['atol'], b['rtol'])} "
                   f"(at most {b['max_halvings']} halvings). Each cell: P(τ ≤ T) in % with its 95 % "
                   f"Clopper–Pearson interval, the dt reached (here {dts}) and Δ's paired "
                   f"interval in %; "
                   + (f"{n_nc} cell(s) could not be settled (grey, hatched, 'unsettled': "
                      f"the paired interval is wider than the tolerance at {n} paths, or Δ "
                      f"was still resolved away from 0 at the last halving; the value shown "
                      f"is the finest step's, not a converged one). "
                      if n_nc else "every cell converged. ")
                   + f"The colour scale runs from 0 to the largest upper interval end "
                   f"(rounded up), not to 100 %. The cubic attention drift (∝ γ²/τ0²) makes "
                   f"paths blow up in finite time. Unlike Euler–Maruyama's dead fraction at a "
                   f"fixed dt (mostly cone exits, a property of the step), this is a property "
                   f"of the SDE. Table with counts at the converged dt and the whole sequence "
                   f"(P@dt): stability.csv. Seed {self.seed}.")
        return table

