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
  the fitted slope with its 95 % interval (fit over the points above twice their floor).
- ``stability``: fraction of dead SDE paths over a (γ, τ0) grid (arch=attention, T = 1,
  dt = 0.01) as a heat map, and ``stability.csv`` with Clopper–Pearson 95 % intervals.

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
import warnings

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.stats  # noqa: E402

from sde.errors import CovsdeInputError  # noqa: E402
from sde.initial import equicorrelated  # noqa: E402
from sde.io import check_writable_dir, read_dataset, write_dataset  # noqa: E402
from sde.models import ShapedAttention, ShapedBlock, ShapedMLP  # noqa: E402
from sde.schema import dead_fraction_ci  # noqa: E402
from sde.simulate import simulate  # noqa: E402

from .demo import DEMO_MODEL, DEMO_V0  # noqa: E402
from .demo import staging_dir  # noqa: E402
from .distances import (bootstrap_distances, censoring_bound, distances,  # noqa: E402
                        usable_paths)
from .figures import COLORS, plot_trajectories, save_figure  # noqa: E402
from .overlay import plot_overlay, time_index  # noqa: E402
from .statistics import compute_stat  # noqa: E402

FIGURES = ("distribution", "trajectories", "convergence", "stability", "rank_collapse",
           "masks_layernorm", "similarity_removal", "espa_kernel")
DIST_RATIOS = (0.25, 0.5, 1.0, 2.0)
CONV_RATIOS = (0.25, 0.5, 1.0)
#: SDE step of the convergence reference: 2^-9, finer than 1/n for every width used, and
#: every d/n and layer/width (widths are powers of 2) is an exact multiple of it.
CONV_DT = 2.0 ** -9

#: path counts, widths and grids per size.
SIZES = {
    "full": dict(dist_sde_paths=20_000, dist_fin_paths=4000, dist_width=200,
                 conv_widths=(16, 32, 64, 128, 256), conv_fin_paths=40_000,
                 conv_sde_paths=200_000, n_boot=200,
                 stab_gammas=(0.25, 0.5, 0.75, 1.0), stab_taus=(0.25, 0.5, 1.0, 2.0),
                 stab_paths=10_000),
    "quick": dict(dist_sde_paths=5000, dist_fin_paths=1500, dist_width=64,
                  conv_widths=(8, 16, 32, 64), conv_fin_paths=40_000,
                  conv_sde_paths=80_000, n_boot=100,
                  stab_gammas=(0.5, 0.75, 1.0), stab_taus=(0.5, 1.0, 2.0),
                  stab_paths=2000),
    "tiny": dict(dist_sde_paths=400, dist_fin_paths=200, dist_width=16,
                 conv_widths=(8, 16, 32), conv_fin_paths=400,
                 conv_sde_paths=1000, n_boot=40,
                 stab_gammas=(0.5, 1.0), stab_taus=(0.5, 1.0),
                 stab_paths=300),
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

    # ---------------------------------------------------------------- (c)
    def convergence_table(self):
        """Distances per (width, d/n), and bootstrap replicates of KS and W1 over paths
        (the SDE resample shared across widths) for the slope's uncertainty."""
        c = self.cfg
        model = ShapedMLP()
        V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
        t_end = max(CONV_RATIOS)
        sde = self._sde("mlp_sde", model, V0, t_end, CONV_DT, c["conv_sde_paths"],
                        _SEED_INDEX["conv_sde"], save_every=int(round(0.25 / CONV_DT)))
        frames, reps = [], {}
        shared = derived_seed(self.seed, 2000)
        for i, n in enumerate(c["conv_widths"]):
            save_every = math.gcd(*(int(round(r * n)) for r in CONV_RATIOS))
            fin = self._finite(f"mlp_finite_n{n}", model, V0, n, t_end, c["conv_fin_paths"],
                               _SEED_INDEX["conv_finite"] + i, save_every)
            with warnings.catch_warnings():  # logged once below instead
                warnings.simplefilter("ignore")
                df = distances(fin, sde, stats=["corr:0,1"], times=list(CONV_RATIOS),
                               n_boot=c["n_boot"], seed=derived_seed(self.seed, 1000 + i))
            for note in df.attrs["warnings"] if i == 0 else ():
                self.log(f"  note    {note}")
            df.insert(0, "width", n)
            frames.append(df)
            bound = censoring_bound(fin, sde)
            xa, xb = (compute_stat(ds["V"], "corr:0,1").values for ds in (fin, sde))
            ua, ub = usable_paths(fin, bound), usable_paths(sde, bound)
            rng = np.random.default_rng(derived_seed(self.seed, 3000 + i))
            for r in CONV_RATIOS:
                ia, ib = time_index(fin, r), time_index(sde, r)
                x = xa[:, ia][ua[:, ia] & np.isfinite(xa[:, ia])]
                y = xb[:, ib][ub[:, ib] & np.isfinite(xb[:, ib])]
                reps[(n, r)] = bootstrap_distances(x, y, c["n_boot"], rng,
                                                   shared_seed=shared)
        table = pd.concat(frames, ignore_index=True)
        return table, sde, reps

    def convergence(self):
        table, sde, reps = self.convergence_table()
        self._csv(table, "convergence.csv")
        c = self.cfg
        fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), constrained_layout=True)
        cmap = plt.get_cmap("viridis")
        fits = []
        for ax, (k, key, name) in zip(axes, ((0, "ks", "KS"), (1, "w1", "W1"))):
            for j, r in enumerate(CONV_RATIOS):
                col = cmap(0.1 + 0.75 * j / max(1, len(CONV_RATIOS) - 1))
                d = table[np.isclose(table["time"], r)].sort_values("width")
                n = d["width"].to_numpy(float)
                y = d[key].to_numpy(float)
                floor = d[f"{key}_noise_floor"].to_numpy(float)
                boot = np.stack([reps[(int(w), r)][k] for w in n], axis=1)
                fit = fit_slope(n, y, boot)
                fits.append(dict(distance=name, ratio=r, **fit))
                ax.plot(n, y, "o", color=col)
                ax.plot(n, floor, ":", color=col, lw=1.5)
                lab = f"d/n = {r:g}: " + fit["label"]
                if fit["ok"]:
                    ax.plot(n, np.exp(fit["intercept"]) * n ** fit["slope"], "-", color=col,
                            lw=1.2, label=lab)
                    if j == 0:
                        ref = np.exp(fit["intercept"]) * n[0] ** fit["slope"] * (n / n[0]) ** -0.5
                        ax.plot(n, ref, "--", color="0.45", lw=1.2,
                                label=r"reference slope $n^{-1/2}$")
                else:
                    ax.plot([], [], "-", color=col, label=lab)
            ax.plot([], [], ":", color="gray", label="noise floor (permutation mean, colour "
                                                     "of its d/n)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(c["conv_widths"], [str(w) for w in c["conv_widths"]])
            ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel("width n (finite network, reduced sampler)")
            ax.set_ylabel(rf"{name}(finite, SDE) of $\rho_{{01}}$")
            ax.set_title(rf"{name} distance of $\rho_{{01}}$, finite vs SDE", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13),
                      frameon=False)
        fig.suptitle(f"Convergence to the SDE: shaped MLP (Li–Nica–Roy, ReLU c₊ = 0, c₋ = −1, "
                     f"no residual), m = {DEMO_V0['m']}, ρ0 = {_fmt(DEMO_V0['rho0'])}\n"
                     f"finite: reduced sampler, {c['conv_fin_paths']} paths per n; SDE: "
                     f"{sde.attrs['n_paths']} paths, dt = 2⁻⁹; seed {self.seed}", fontsize=9)
        self._save(fig, "convergence",
                   f"Two-sample KS and W1 distances between ρ_01 of finite shaped MLPs "
                   f"(Li–Nica–Roy, shaped ReLU c₊ = 0, c₋ = −1; reduced sampler, "
                   f"{c['conv_fin_paths']} paths per width) and of the covariance SDE "
                   f"(Euler–Maruyama, dt = 2⁻⁹, {sde.attrs['n_paths']} paths) against width n, "
                   f"at d/n ∈ {{{', '.join(_fmt(r) for r in CONV_RATIOS)}}}; m = {DEMO_V0['m']}, "
                   f"ρ0 = {_fmt(DEMO_V0['rho0'])}. Dotted: noise floor (mean distance over "
                   f"{c['n_boot']} permutations of the pooled sample: the level of two samples "
                   f"of one law). Lines: least-squares fit of log distance on log n over ALL "
                   f"widths (no selection on the outcome); legend: slope ± 1.96 bootstrap "
                   f"standard errors ({c['n_boot']} resamples of the paths of both sides, the "
                   f"SDE resample shared across widths). Points near the floor flatten the "
                   f"slope (the plug-in distance is biased upward by about the floor). Grey "
                   f"dashed: reference slope n^-1/2, predicted for c₊ + c₋ ≠ 0. Table: "
                   f"convergence.csv. Seed {self.seed}.")
        return pd.DataFrame(fits)

    # ---------------------------------------------------------------- (d)
    def stability_table(self):
        c = self.cfg
        V0 = equicorrelated(DEMO_V0["m"], DEMO_V0["rho0"])
        rows = []
        k = _SEED_INDEX["stab"]
        for g in c["stab_gammas"]:
            for tau in c["stab_taus"]:
                model = ShapedAttention(gamma=g, tau0=tau)
                ds = self._sde(f"attention_g{g:g}_tau{tau:g}", model, V0, 1.0, 0.01,
                               c["stab_paths"], k, save_every=100)
                k += 1
                a = ds.attrs
                frac, lo, hi = dead_fraction_ci(a["n_dead"], a["n_paths"])
                rows.append(dict(gamma=g, tau0=tau, T=1.0, dt=0.01, n_paths=a["n_paths"],
                                 n_dead=a["n_dead"], n_left_cone=a["n_left_cone"],
                                 n_blew_up=a["n_blew_up"], dead_fraction=frac,
                                 ci95_low=lo, ci95_high=hi))
        return pd.DataFrame(rows)

    def stability(self):
        table = self.stability_table()
        self._csv(table, "stability.csv")
        gammas, taus = self.cfg["stab_gammas"], self.cfg["stab_taus"]
        grid = np.full((len(gammas), len(taus)), np.nan)
        for r in table.itertuples():
            grid[gammas.index(r.gamma), taus.index(r.tau0)] = r.dead_fraction
        fig, ax = plt.subplots(figsize=(1.5 * len(taus) + 2.8, 1.0 * len(gammas) + 2.0),
                               constrained_layout=True)
        vmax = _nice_ceiling(100 * float(np.nanmax(table["ci95_high"])))
        im = ax.imshow(grid * 100, origin="lower", cmap="Reds", vmin=0, vmax=vmax,
                       aspect="auto")
        for r in table.itertuples():
            i, j = gammas.index(r.gamma), taus.index(r.tau0)
            col = "white" if 100 * r.dead_fraction > 0.6 * vmax else "black"
            ax.text(j, i, f"{_pct(r.dead_fraction)} %\n[{_pct(r.ci95_low)}, "
                          f"{_pct(r.ci95_high)}]", ha="center", va="center", fontsize=8,
                    color=col)
        ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
        ax.set_yticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        ax.set_xlabel("attention temperature τ0")
        ax.set_ylabel("residual weight γ")
        fig.colorbar(im, ax=ax, label="dead SDE paths by T = 1 (%)")
        n = int(table["n_paths"].iloc[0])
        ax.set_title(f"Stability of the shaped-attention SDE: m = {DEMO_V0['m']}, "
                     f"ρ0 = {_fmt(DEMO_V0['rho0'])}, H = 1,\nT = 1, dt = 0.01, {n} paths per "
                     f"cell; dead % [95 % Clopper–Pearson];\ncolour scale 0–{vmax:g} %, "
                     f"fitted to the data", fontsize=9)
        self._save(fig, "stability",
                   f"Fraction of shaped-attention SDE paths (m = {DEMO_V0['m']}, ρ0 = "
                   f"{_fmt(DEMO_V0['rho0'])}, one head) that die before T = 1 (Euler–Maruyama, "
                   f"dt = 0.01, {n} paths per cell; dead = left the PD cone or |V_ab| > 1e4 or "
                   f"non-finite), over the (γ, τ0) grid, with 95 % Clopper–Pearson intervals "
                   f"in brackets; the colour scale runs from 0 to the largest upper interval "
                   f"end (rounded up), not to 100 %. The cubic attention drift (∝ γ²/τ0²) makes "
                   f"paths blow up in finite time. Table with counts by cause: stability.csv. "
                   f"Seed {self.seed}.")
        return table

    # ---------------------------------------------------------------- all
    # ---------------------------------------------------------------- rank collapse (§2.4)

    def _collapse(self, name):
        from .collapse_figures import draw_collapse_figure

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


def fit_slope(n, y, y_boot=None, level=0.95):
    """Least-squares slope of log y on log n over ALL points (no selection on the outcome).

    ``y_boot``: optional (B, k) bootstrap replicates of y (paths resampled); then the
    interval is slope ± z · (standard deviation of the refitted slopes), which always
    contains the estimate; without replicates, slope ± t_{k−2} · stderr (linregress).
    Returns dict(ok, slope, intercept, ci_low, ci_high, se, n_points, label).
    """
    n = np.asarray(n, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(y) & (y > 0)
    k = int(keep.sum())
    out = dict(ok=False, slope=np.nan, intercept=np.nan, ci_low=np.nan, ci_high=np.nan,
               se=np.nan, n_points=k)
    need = 2 if y_boot is not None else 3
    if k < need or k < keep.size:
        out["label"] = f"no fit ({k} positive point{'s' if k != 1 else ''} of {keep.size})"
        return out
    res = scipy.stats.linregress(np.log(n), np.log(y))
    if y_boot is not None:
        yb = np.asarray(y_boot, dtype=float)
        ok = np.all(np.isfinite(yb) & (yb > 0), axis=1)
        X = np.log(n) - np.log(n).mean()
        slopes = (np.log(yb[ok]) @ X) / (X @ X)
        se = float(np.std(slopes, ddof=1)) if slopes.size > 1 else np.nan
        half = scipy.stats.norm.ppf(0.5 + level / 2) * se
        how = "±1.96 boot. se"
    else:
        se = float(res.stderr)
        half = scipy.stats.t.ppf(0.5 + level / 2, k - 2) * se
        how = "t interval"
    out.update(ok=True, slope=res.slope, intercept=res.intercept, ci_low=res.slope - half,
               ci_high=res.slope + half, se=se)
    out["label"] = (f"slope {res.slope:.2f} [{res.slope - half:.2f}, {res.slope + half:.2f}]"
                    f" ({how}, {k} widths)")
    return out


def _nice_ceiling(x):
    """A round number >= x (1, 2, 2.5 or 5 × 10^k) for a colour scale."""
    x = max(float(x), 0.1)
    e = 10 ** math.floor(math.log10(x))
    return next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= x)


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
