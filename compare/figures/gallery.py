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
import math
import os
import textwrap
import time

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sde.errors import CovsdeInputError  # noqa: E402
from sde.initial import equicorrelated  # noqa: E402
from sde.io import check_writable_dir, read_dataset, write_dataset  # noqa: E402
from sde.models import ShapedBlock  # noqa: E402
from sde.simulate import simulate  # noqa: E402

from ..demo import DEMO_MODEL, DEMO_V0  # noqa: E402
from ..demo import staging_dir  # noqa: E402
from .style import COLORS, plot_trajectories, save_figure  # noqa: E402
from .sweep import fit_slope  # noqa: E402,F401  (re-exported)
from .overlay import plot_overlay  # noqa: E402

FIGURES = ("distribution", "trajectories", "convergence", "stability", "rank_collapse",
           "masks_layernorm", "similarity_removal", "espa_kernel")
DIST_RATIOS = (0.25, 0.5, 1.0, 2.0)
CONV_RATIOS = (0.25, 0.5, 1.0)
#: SDE step of the convergence reference: 2^-9, finer than 1/n for every width used, and
#: every d/n and layer/width (widths are powers of 2) is an exact multiple of it.
CONV_DT = 2.0 ** -9
#: horizon T of the stability map's blow-up probabilities.
STAB_T = 1.0

#: path counts, widths and grids per size.
SIZES = {
    "full": dict(dist_sde_paths=20_000, dist_fin_paths=4000, dist_width=200,
                 conv_widths=(16, 32, 64, 128, 256), conv_fin_paths=40_000,
                 conv_sde_paths=200_000, n_boot=200,
                 stab_gammas=(0.25, 0.5, 0.75, 1.0), stab_taus=(0.25, 0.5, 1.0, 2.0),
                 stab_paths=10_000, stab_dt0=0.05, stab_halvings=6),
    "quick": dict(dist_sde_paths=5000, dist_fin_paths=1500, dist_width=64,
                  conv_widths=(8, 16, 32, 64), conv_fin_paths=40_000,
                  conv_sde_paths=80_000, n_boot=100,
                  stab_gammas=(0.5, 0.75, 1.0), stab_taus=(0.5, 1.0, 2.0),
                  stab_paths=2000, stab_dt0=0.05, stab_halvings=5),
    "tiny": dict(dist_sde_paths=400, dist_fin_paths=200, dist_width=16,
                 conv_widths=(8, 16, 32), conv_fin_paths=400,
                 conv_sde_paths=1000, n_boot=40,
                 stab_gammas=(0.5, 1.0), stab_taus=(0.5, 1.0),
                 stab_paths=300, stab_dt0=0.1, stab_halvings=4),
}
#: dataset index k for the seeds (never reuse a k).
_SEED_INDEX = {"dist_sde": 1, "dist_ode": 2, "dist_finite": 3, "conv_sde": 4, "conv_finite": 10,
               "stab": 100}


def derived_seed(seed, k):
    """The seed of dataset k in a run with seed ``seed``: ``SeedSequence([seed, k])``."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, np.uint32)[0])


def _fmt(x):
    return f"{x:g}".replace("-", "−")


def _nb(text):
    """Keep ``name = value`` together when a title is wrapped (non-breaking spaces)."""
    return text.replace(" = ", "\u00a0=\u00a0")


def _fine_save_every(n, ratios, per_unit=20):
    """Largest divisor of the gcd of the ratio layers that saves >= ``per_unit`` times per
    unit of t (so every ratio is a saved time and bands are smooth)."""
    g = math.gcd(*(int(round(r * n)) for r in ratios))
    return max(d for d in range(1, g + 1) if g % d == 0 and d <= max(1, n // per_unit))


def block_text():
    g = DEMO_MODEL["gamma"]
    gt = "1/√8" if abs(g - 8 ** -0.5) < 1e-12 else _fmt(g)
    return _nb(f"shaped block, m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}, γ = {gt}, "
            f"τ0 = {_fmt(DEMO_MODEL['tau0'])}, c₊ = {_fmt(DEMO_MODEL['c_plus'])}, "
            f"c₋ = {_fmt(DEMO_MODEL['c_minus'])}")


class Gallery:
    """Builds the datasets (when missing) and the figures under ``out_dir``."""

    def __init__(self, out_dir, size="quick", seed=0, log=print):
        if size not in SIZES:
            raise CovsdeInputError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise CovsdeInputError(f"seed must be an integer >= 0, got {seed!r}")
        self.out_dir = out_dir
        self.data_dir = os.path.join(out_dir, "data")
        self.size = size
        self.cfg = SIZES[size]
        self.seed = int(seed)
        self.log = log
        self.captions = {}
        self.written = []
        self.generated = []  # data files (re)generated in this run
        self.reused = []

    # ---------------------------------------------------------------- datasets
    def _dataset(self, name, request, make):
        """The saved dataset ``data/name.nc`` if it matches ``request``, else make and save."""
        path = os.path.join(self.data_dir, name + ".nc")
        key = json.dumps(request, sort_keys=True)
        if os.path.exists(path):
            try:
                ds = read_dataset(path)
            except CovsdeInputError:
                ds = None
            if ds is not None and _matches(ds, request, key):
                self.log(f"  reuse   data/{name}.nc ({ds.attrs['n_paths']} paths)")
                self.reused.append(path)
                return ds
            self.log(f"  data/{name}.nc does not match the requested parameters: regenerating")
        self.log(f"  making  data/{name}.nc ({request['n_paths']} paths) ...")
        t0 = time.perf_counter()
        ds = make()
        ds.attrs["gallery_request"] = key
        write_dataset(ds, path)
        self.generated.append(path)
        self.log(f"  wrote   data/{name}.nc ({ds.attrs['n_paths']} paths, "
                 f"{ds.attrs['n_dead']} dead; {time.perf_counter() - t0:.1f} s)")
        return ds

    def _sde(self, name, model, V0, t_end, dt, n_paths, seed_k, save_every, method="euler"):
        seed = derived_seed(self.seed, seed_k)
        request = dict(kind=f"sde-{method}", **model.params(), V0=V0.tolist(), t_end=t_end,
                       dt=dt, n_paths=1 if method == "ode" else n_paths, seed=seed,
                       save_every=save_every)
        return self._dataset(name, request, lambda: simulate(
            model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=seed, save_every=save_every,
            method=method, progress=self.size == "full"))

    def _finite(self, name, model, V0, width, t_end, n_paths, seed_k, save_every):
        from finite import sample

        seed = derived_seed(self.seed, seed_k)
        request = dict(kind="finite-reduced", **model.params(), V0=V0.tolist(), width=width,
                       t_end=t_end, n_paths=n_paths, seed=seed, save_every=save_every)
        return self._dataset(name, request, lambda: sample(
            model, V0, width=width, n_paths=n_paths, seed=seed, t_end=t_end, sampler="reduced",
            save_every=save_every, progress=self.size == "full"))

    # ---------------------------------------------------------------- output
    def _out(self, name):
        """Where an output file is written during the run (the staging directory)."""
        return os.path.join(self.stage, name)

    def _save(self, fig, stem, caption):
        """Save a Figure as PNG and PDF (into the staging directory); record the caption."""
        for ext in ("png", "pdf"):
            save_figure(fig, self._out(f"{stem}.{ext}"), "--out", close=False)
            self.written.append(os.path.join(self.out_dir, f"{stem}.{ext}"))
        plt.close(fig)
        self.captions[stem] = f"{caption} (Size {self.size}.)"
        self.log(f"  figure  {stem}.png / .pdf")

    def _csv(self, table, name):
        table.to_csv(self._out(name), index=False)
        self.written.append(os.path.join(self.out_dir, name))

    def write_captions(self):
        """captions.md: this run's captions, plus those of figures not redrawn (--only)."""
        old = read_captions(os.path.join(self.out_dir, "captions.md"))
        caps = {stem: cap for stem, cap in old.items() if stem not in self.captions}
        caps.update(self.captions)
        order = [s for s in STEMS if s in caps] + [s for s in caps if s not in STEMS]
        lines = ["# covsde figures", "",
                 "Each caption describes the last run that drew its figure (`--only` redraws "
                 "some and keeps the others' captions); sizes and seeds are in the captions.",
                 ""]
        for stem in order:
            lines += [f"## {stem}.png / {stem}.pdf", "", caps[stem], ""]
        with open(self._out("captions.md"), "w") as fh:
            fh.write("\n".join(lines))
        self.written.append(os.path.join(self.out_dir, "captions.md"))

    # ---------------------------------------------------------------- (a), (b)
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
                   " The x axis shows the pooled 0.5–99.5 % quantile range (V_00 is heavy-"
                   "tailed: SDE paths can blow up); densities stay normalised over all alive "
                   "paths and each panel states the share outside.")
            kde = ("Gaussian KDE reflected at ρ = ±1 (no boundary drop)" if stat.startswith(
                "corr") else "Gaussian KDE reflected at V_00 = 0")
            self._save(fig, stem,
                       f"Histograms (outlined steps on bins shared by all sources and panels) "
                       f"and {kde} of {name} at depth-to-width ratio d/n = t ∈ {{0.25, 0.5, "
                       f"1, 2}}: finite network (reduced sampler, width n = {n}) vs its "
                       f"covariance SDE (Euler–Maruyama) vs the width-first ODE limit (dashed "
                       f"line). Panels share both axes. {block_text()}; {paths}. Over paths "
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

    # ---------------------------------------------------------------- sweeps
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

    # ---------------------------------------------------------------- (c)
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
                   f"near the floor flatten the slope. Grey dashed: reference slope n^-1/2, "
                   f"predicted for c₊ + c₋ ≠ 0. Table: convergence.csv. Seed {self.seed}.")
        return fits

    # ---------------------------------------------------------------- (d)
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
                      f"paths per dt,\ndt halved from {b['dt0']:g} until the intervals of the "
                      f"last {b['stable_pairs'] + 1} steps overlap pairwise;\ndt reached and the "
                      f"value at 2·dt shown)"
                      + ("; hatched = not converged" if n_nc else ""),
            colorbar_label=f"P(τ ≤ {STAB_T:g}) (%)")
        self._save(fig, "stability",
                   f"The shaped-attention SDE's own finite-time blow-up probability P(τ ≤ T), "
                   f"T = {STAB_T:g} (m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}, one "
                   f"head), over the (γ, τ0) grid: a covsde sweep with source blowup (STORE "
                   f"data/stability_sweep), each cell sde.blowup.blowup_probability with the "
                   f"SPD scheme (never leaves the PD cone, so every dead path blew up: |V_ab| "
                   f"> 1e4 or non-finite), {n} fresh paths per step size, dt halved from "
                   f"{b['dt0']:g} until the 95 % Clopper–Pearson intervals of the last "
                   f"{b['stable_pairs'] + 1} step sizes overlap pairwise, the coarsest with "
                   f"the finest included (at most "
                   f"{b['max_halvings']} halvings; with {n} paths per step size, "
                   f"'converged' means that no change between step sizes is detectable at "
                   f"that sample size). Each cell: P(τ ≤ T) in % with its 95 % "
                   f"interval, the dt at which it converged (here {dts}) and, in "
                   f"parentheses, the estimate at twice that dt (how much the last halving moved it); "
                   + (f"{n_nc} cell(s) did not converge (hatched, n.c.: the finest step's "
                      f"value). " if n_nc else "every cell converged. ")
                   + f"The colour scale runs from 0 to the largest upper interval end "
                   f"(rounded up), not to 100 %. The cubic attention drift (∝ γ²/τ0²) makes "
                   f"paths blow up in finite time. Unlike Euler–Maruyama's dead fraction at a "
                   f"fixed dt (mostly cone exits, a property of the step), this is a property "
                   f"of the SDE. Table with counts at the converged dt and the whole sequence "
                   f"(P@dt): stability.csv. Seed {self.seed}.")
        return table

    # ---------------------------------------------------------------- all
    # ---------------------------------------------------------------- rank collapse (§2.4)

    def _collapse(self, name):
        from .collapse import draw_collapse_figure

        draw_collapse_figure(name, self.size if self.size in ("tiny", "quick") else "full",
                             self.seed, self._save)

    def rank_collapse(self):
        self._collapse("rank_collapse")

    def masks_layernorm(self):
        self._collapse("masks_layernorm")

    def similarity_removal(self):
        self._collapse("similarity_removal")

    def espa_kernel(self):
        self._collapse("espa_kernel")

    def run(self, only=FIGURES):
        """Draw the figures into a staging directory and move them into ``out_dir`` only
        when all are done (an interrupted run leaves no half-written set; the datasets under
        data/ are written one by one, atomically, and reused by the next run)."""
        with staging_dir(self.out_dir) as self.stage:
            os.makedirs(self.data_dir, exist_ok=True)
            for name in only:
                t0 = time.perf_counter()
                self.log(f"[{name}]")
                getattr(self, name)()
                self.log(f"[{name}] done in {time.perf_counter() - t0:.1f} s")
            self.write_captions()
        return self.written


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


def check_out_dir(out_dir, name="--out"):
    """Raise unless ``out_dir`` is an existing directory or can be created in an existing one."""
    path = os.path.abspath(out_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise CovsdeInputError(f"{name}: {out_dir} exists and is not a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise CovsdeInputError(f"{name}: parent directory does not exist: {parent}")
    data = os.path.join(path, "data")
    if os.path.exists(data) and not os.path.isdir(data):
        raise CovsdeInputError(f"{name}: {data} exists and is not a directory")
    check_writable_dir(path if os.path.isdir(path) else parent, name)


def read_captions(path):
    """stem → caption from an existing captions.md (empty if none)."""
    if not os.path.exists(path):
        return {}
    out, stem, buf = {}, None, []
    with open(path) as fh:
        for line in fh.read().splitlines():
            if line.startswith("## "):
                if stem:
                    out[stem] = "\n".join(buf).strip()
                stem, buf = line[3:].split(".")[0], []
            elif stem:
                buf.append(line)
    if stem:
        out[stem] = "\n".join(buf).strip()
    return out


STEMS = ("distribution_rho01", "distribution_V00", "trajectories", "convergence", "stability",
         "rank_collapse", "masks_layernorm", "similarity_removal", "espa_kernel")


def _pct(x):
    """A fraction as a percentage: two decimals below 1 %, one above."""
    return f"{100 * x:.2f}" if 100 * x < 1 else f"{100 * x:.1f}"


def _dead_at(ds, t):
    i = int(np.argmin(np.abs(ds["time"].values - t)))
    alive = np.isfinite(ds["V"].values[:, i, 0, 0])
    return 1.0 - alive.mean()


def _matches(ds, request, key):
    """Does a saved dataset hold what ``request`` asks for (gallery key and native attrs)?"""
    a = ds.attrs
    if a.get("gallery_request") != key:
        return False
    if not str(a.get("source", "")).startswith(request["kind"]):
        return False
    for k, v in request.items():
        if k in ("kind", "save_every", "V0"):
            continue
        if k not in a:
            return False
        if isinstance(v, str):
            if str(a[k]) != v:
                return False
        elif not math.isclose(float(a[k]), float(v), rel_tol=1e-12, abs_tol=0.0):
            return False
    return True


__all__ = ["FIGURES", "SIZES", "Gallery", "make_figures", "fit_slope", "derived_seed",
           "COLORS"]
