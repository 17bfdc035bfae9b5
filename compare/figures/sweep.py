"""Figures drawn from a sweep STORE (``covsde figures --sweep STORE --out DIR``).

- :func:`plot_convergence`: a distance finite-vs-SDE of one statistic against width n,
  log-log, one colour per d/n, with its noise floor (dotted), the slope fitted on all widths
  with its 95 % interval, and an n^-1/2 reference line (also the gallery's figure);
- :func:`plot_stability`: over a (γ, τ0) grid, the converged blow-up probability of a
  ``sources.blowup`` sweep (or else the dead fraction of a source) as a heat map with
  Clopper–Pearson 95 % intervals (also the gallery's stability map).

Both take the dataset of :func:`compare.sweep.open_sweep`, an optional ``ax``, and return the
Figure; they use matplotlib's object API (no ``pyplot``, no backend switch).
:func:`figures_from_sweep` writes every figure a STORE allows.
"""
import itertools
import json
import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator

from sde.errors import CovsdeInputError

DISTANCE_NAMES = {"ks": "KS", "w1": "W1"}
#: dims of an open_sweep dataset that are not grid axes.
NON_GRID_DIMS = ("stat", "source", "quantile", "boot")


def _axis_pick(ds, keep, sel):
    """Select ``sel`` and squeeze size-1 axes; refuse other grid axes left with > 1 value."""
    sel = dict(sel or {})
    for k, v in list(sel.items()):
        if k not in ds.dims:
            raise CovsdeInputError(f"sel: the sweep has no axis {k!r}")
    ds = ds.sel(sel)
    grid_dims = [d for d in ds.dims if d not in NON_GRID_DIMS]
    for d in grid_dims:
        if d not in keep and ds.sizes[d] > 1:
            raise CovsdeInputError(f"the sweep has {ds.sizes[d]} values of {d}: choose one "
                                   f"with sel={{'{d}': ...}}")
    return ds.squeeze([d for d in grid_dims if d not in keep and ds.sizes[d] == 1])


def _model_text(ds):
    try:
        cfg = json.loads(ds.attrs["config"])
    except (KeyError, ValueError):
        return ""
    m = cfg["model"]
    parts = [f"{k} = {v}" for k, v in m.items() if k != "arch" and not isinstance(v, list)]
    init = cfg["initial"]
    parts += [f"{k} = {v}" for k, v in init.items() if not isinstance(v, list)]
    src = cfg["sources"]
    paths = []
    def shared(table):
        return f", one sample shared across {'/'.join(table['share'])}" if table.get(
            "share") else ""

    if "sde" in src:
        paths.append(f"SDE {src['sde']['paths']} paths (dt {src['sde']['dt']:g}"
                     f"{shared(src['sde'])})")
    if "finite" in src:
        paths.append(f"finite {src['finite']['sampler']} {src['finite']['paths']} paths"
                     + (f" ({shared(src['finite'])[2:]})" if src['finite'].get("share")
                        else ""))
    return f"{m['arch']}: " + ", ".join(parts) + (f"; {', '.join(paths)}" if paths else "")


def _new_ax(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, constrained_layout=True)
    return fig, fig.add_subplot()


def convergence_fits(ds, stat="corr:0,1", distance="ks", sel=None, level=0.95):
    """The fitted slope of log ``distance`` on log n per d/n (:func:`fit_slope` over ALL
    widths), with its bootstrap interval when the sweep kept the replicates
    (``<distance>_boot``, ``compare.boot_replicates = true``), else a t interval.
    Returns a ``pandas.DataFrame`` (one row per ratio)."""
    import pandas as pd

    d = _convergence_data(ds, stat, distance, sel)
    n = d["width"].values.astype(float)
    rows = []
    for r in d["ratio"].values:
        y = d[distance].sel(ratio=r).transpose("width").values.astype(float)
        boot = None
        if f"{distance}_boot" in d:
            boot = d[f"{distance}_boot"].sel(ratio=r).transpose("boot", "width").values
        rows.append(dict(distance=DISTANCE_NAMES.get(distance, distance), stat=stat,
                         ratio=float(r), **fit_slope(n, y, boot, level)))
    return pd.DataFrame(rows)


def _convergence_data(ds, stat, distance, sel):
    if "width" not in ds.dims or distance not in ds:
        raise CovsdeInputError(f"convergence needs a width axis and the distance {distance!r} "
                               f"(a sweep with a finite source)")
    if stat not in list(ds["stat"].values):
        raise CovsdeInputError(f"stat {stat!r} is not in the sweep "
                               f"({', '.join(map(str, ds['stat'].values))})")
    return _axis_pick(ds.sel(stat=stat), ("ratio", "width"), sel)


def plot_convergence(ds, stat="corr:0,1", distance="ks", ax=None, sel=None, title=None):
    """``distance`` (finite vs SDE) of ``stat`` against width, log-log, one colour per d/n.

    ds: :func:`compare.sweep.open_sweep` output with ``ratio`` (R) and ``width`` (W) axes;
    other grid axes must be fixed by ``sel`` (or have one value). Draws the values (points),
    the noise floor ``<distance>_noise_floor`` (dotted, same colour), the least-squares
    line of log distance on log n fitted on ALL widths with its slope and 95 % interval in
    the legend (:func:`convergence_fits`: bootstrap when the sweep kept the replicates,
    else a t interval) and a grey n^-1/2 reference line through the first d/n's fit at the
    smallest width. The summary has no interval of a distance itself (the plug-in distance
    is biased upward by about its floor), so points carry none. Returns the Figure.
    """
    d = _convergence_data(ds, stat, distance, sel)
    fits = convergence_fits(ds, stat, distance, sel)
    fig, ax = _new_ax(ax, (6.4, 5.4))
    n = d["width"].values.astype(float)
    ratios = d["ratio"].values
    floor_name = f"{distance}_noise_floor"   # compare.distances' column name
    ref = None
    for j, (r, fit) in enumerate(zip(ratios, fits.itertuples())):
        col = _viridis(j, len(ratios))
        y = d[distance].sel(ratio=r).transpose("width").values.astype(float)
        ax.plot(n, y, "o", color=col, ms=5)
        if floor_name in d:
            f = d[floor_name].sel(ratio=r).transpose("width").values.astype(float)
            ax.plot(n, f, ":", color=col, lw=1.5)
        lab = f"d/n = {r:g}: {fit.label}"
        if fit.ok:
            ax.plot(n, np.exp(fit.intercept) * n ** fit.slope, "-", color=col, lw=1.2,
                    label=lab)
            if ref is None:
                ref = np.exp(fit.intercept) * n[0] ** fit.slope * (n / n[0]) ** -0.5
        else:
            ax.plot([], [], "-", color=col, label=lab)
    if ref is not None:  # through the first fitted d/n's line at the smallest width
        ax.plot(n, ref, "--", color="0.45", lw=1.2, label=r"reference slope $n^{-1/2}$")
    if floor_name in d:
        ax.plot([], [], ":", color="gray", label="noise floor (permutation mean, colour of "
                                                 "its d/n)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n, [f"{int(w)}" for w in n])
    ax.xaxis.set_minor_locator(NullLocator())
    name = DISTANCE_NAMES.get(distance, distance)
    stat_tex = _stat_label(stat)
    ax.set_xlabel("width n (finite network)")
    ax.set_ylabel(f"{name}(finite, SDE) of {stat_tex}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    extra = ", ".join(f"{k} = {v.item():g}" for k, v in d.coords.items()
                      if k not in ("ratio", "width") + NON_GRID_DIMS
                      and v.ndim == 0 and np.issubdtype(v.dtype, np.number))
    ax.set_title(title or _wrap(f"{name} distance of {stat_tex}, finite vs SDE at t = d/n; "
                                f"{_model_text(ds)}" + (f"; {extra}" if extra else "")),
                 fontsize=8)
    return fig


def _stat_label(stat):
    if stat.startswith("corr:"):
        a, b = stat[5:].split(",")
        return rf"$\rho_{{{a}{b}}}$"
    if stat.startswith("V:"):
        a, b = stat[2:].split(",")
        return rf"$V_{{{a}{b}}}$"
    return stat


def plot_stability(ds, source="sde", ax=None, sel=None, title=None, colorbar_label=None,
                   vmax=None):
    """A heat map over the (γ, τ0) grid of the sweep's probability of dying by t = ratio.

    With a ``sources.blowup`` source: the converged blow-up probability ``P(τ ≤ T)``
    (``blowup_probability``, its Clopper–Pearson 95 % interval, the step ``blowup_dt``
    reached and the paired interval of the last halving's change ``P(2 dt) − P(dt)`` are
    written in each cell). A cell the rule could not settle (not converged: more paths
    needed, or still moving with dt) is drawn as such: grey, hatched, marked "unsettled",
    its value not coloured as a result. Otherwise: the dead fraction of
    ``source`` (a property of the step for Euler–Maruyama; docs/theory.md §4.4) and its
    interval.

    ds: :func:`compare.sweep.open_sweep` output with ``gamma`` (G) and ``tau0`` (T) axes;
    other grid axes fixed by ``sel`` (default: the last ratio, the first value of any other
    axis). The colour scale runs from 0 to the largest interval end (or ``vmax``, a
    probability, to share one scale between maps), rounded up. Returns the Figure.
    """
    if "gamma" not in ds.dims or "tau0" not in ds.dims:
        raise CovsdeInputError("a stability map needs gamma and tau0 grid axes")
    blowup = "blowup_probability" in ds
    sel = dict(sel or {})
    for d in ds.dims:
        if d in ("gamma", "tau0") + NON_GRID_DIMS or d in sel:
            continue
        sel[d] = ds[d].values[-1] if d == "ratio" else ds[d].values[0]
    base = ds if blowup else ds.sel(source=source)
    d = _axis_pick(base, ("gamma", "tau0"), sel).transpose("gamma", "tau0", ...)
    if blowup:
        frac = d["blowup_probability"].values.astype(float)
        lo = d["blowup_ci95_low"].values.astype(float)
        hi = d["blowup_ci95_high"].values.astype(float)
        dts = d["blowup_dt"].values.astype(float)
        conv = d["blowup_converged"].values.astype(float)
        prev = (d["blowup_previous_probability"].values.astype(float)
                if "blowup_previous_probability" in d else np.full(frac.shape, np.nan))
        dlo, dhi = ((d["blowup_difference_ci95_low"].values.astype(float),
                     d["blowup_difference_ci95_high"].values.astype(float))
                    if "blowup_difference_ci95_low" in d else (None, None))
    else:
        frac = d["dead_fraction"].values.astype(float)
        lo = d["dead_fraction_ci95_low"].values.astype(float)
        hi = d["dead_fraction_ci95_high"].values.astype(float)
    gammas, taus = d["gamma"].values, d["tau0"].values
    fig, ax = _new_ax(ax, (1.7 * len(taus) + 2.8, 1.1 * len(gammas) + 2.2))
    if vmax is None:
        vmax = float(np.nanmax(hi)) if np.isfinite(hi).any() else 1.0
    vmax = nice_ceiling(100 * vmax)
    unsettled = (conv != 1) if blowup else np.zeros(frac.shape, dtype=bool)
    shown = np.where(unsettled, np.nan, frac * 100)  # an unsettled cell is not a result
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(shown), origin="lower", cmap=cmap, vmin=0, vmax=vmax,
                   aspect="auto")
    any_nc = bool(unsettled.any())
    for i in range(len(gammas)):
        for j in range(len(taus)):
            col = ("white" if frac[i, j] * 100 > 0.6 * vmax and not unsettled[i, j]
                   else "black")
            text = f"{_pct(frac[i, j])} %\n[{_pct(lo[i, j])}, {_pct(hi[i, j])}]"
            if blowup and np.isfinite(dts[i, j]):
                text += f"\ndt = {dts[i, j]:.3g}"
                if dlo is not None and np.isfinite(dlo[i, j]):
                    text += f"\nΔ [{_signed_pct(dlo[i, j])}, {_signed_pct(dhi[i, j])}]"
                elif np.isfinite(prev[i, j]):
                    text += f"\n(2·dt: {_pct(prev[i, j])} %)"
                if unsettled[i, j]:
                    text = "unsettled\n" + text
                    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                           edgecolor="0.55", lw=0))
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=col)
    ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
    ax.set_yticks(range(len(gammas)), [f"{g:g}" for g in gammas])
    ax.set_xlabel("attention temperature τ0")
    ax.set_ylabel("residual weight γ")
    fixed = ", ".join(f"{k} = {d[k].item():g}" for k in sel if k in d.coords)
    if blowup:
        cfg = json.loads(ds.attrs["config"])["sources"]["blowup"] if "config" in ds.attrs \
            else {}
        from sde.blowup import DEFAULT_ATOL, DEFAULT_RTOL, rule_phrase

        label = colorbar_label or "P(τ ≤ T) (%), converged in dt"
        how = (f"{cfg.get('method', '?')} scheme, {cfg.get('paths', '?')} coupled paths, dt "
               f"halved from {cfg.get('dt0', '?')} "
               f"{rule_phrase(cfg.get('atol', DEFAULT_ATOL), cfg.get('rtol', DEFAULT_RTOL))}"
               ) if cfg else ""
        auto = (f"Blow-up probability P(τ ≤ T) of the SDE converged in dt, T = d/n "
                f"({fixed}); % [95 % Clopper–Pearson], dt reached, Δ [paired 95 %] in %"
                + ("; grey hatched = unsettled (not converged: more paths needed or still "
                   "moving with dt)" if any_nc else "")
                + f"; {how}; {_model_text(ds)}")
    else:
        label = colorbar_label or f"dead {source} paths (%)"
        auto = (f"Dead fraction of {source} paths by t = d/n ({fixed}); % [95 % "
                f"Clopper–Pearson]; {_model_text(ds)}")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title or _wrap(auto), fontsize=8)
    return fig


def _signed_pct(x):
    """A signed percentage for a cell (``+0.12``, ``−0.05``)."""
    return f"{100 * x:+.2f}".replace("-", "−")


def fit_slope(n, y, y_boot=None, level=0.95):
    """Least-squares slope of log y on log n over ALL points (no selection on the outcome).

    ``y_boot``: optional (B, k) bootstrap replicates of y (paths resampled); then the
    interval is slope ± z · (standard deviation of the refitted slopes), which always
    contains the estimate; without replicates, slope ± t_{k−2} · stderr (linregress).
    Returns dict(ok, slope, intercept, ci_low, ci_high, se, n_points, label).
    """
    import scipy.stats

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


def nice_ceiling(x):
    """A round number >= x (1, 2, 2.5 or 5 × 10^k) for a colour scale."""
    import math

    x = max(float(x), 0.1)
    e = 10 ** math.floor(math.log10(x))
    return next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= x)


def _viridis(j, n):
    from matplotlib import colormaps

    return colormaps["viridis"](0.1 + 0.75 * j / max(1, n - 1))


def _wrap(text, width=90):
    import textwrap

    return textwrap.fill(text, width)


def _pct(x):
    if not np.isfinite(x):
        return "–"
    return f"{100 * x:.2f}" if 100 * x < 1 else f"{100 * x:.1f}"


def _save(fig, path):
    tmp = path + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


#: file-name prefixes of the figures :func:`figures_from_sweep` writes.
SWEEP_FIGURE_PREFIXES = ("convergence_", "stability_")


def figures_from_sweep(store, out_dir, log=print):
    """Write every figure the sweep in ``store`` allows under ``out_dir`` (PNG); return paths.

    Convergence (per statistic, for KS and W1, and per value of any grid axis other than
    ratio and width) when the sweep has a finite source; stability maps (per ratio) when
    its grid has gamma and tau0 axes. Unfinished cells are drawn as gaps.
    """
    from ..sweep.store import open_sweep

    ds = open_sweep(store, partial=True)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if "width" in ds.dims:
        others = [d for d in ds.dims if d not in ("ratio", "width") + NON_GRID_DIMS]
        for combo in itertools.product(*(ds[d].values for d in others)):
            sel = dict(zip(others, combo))
            tag = "".join(f"_{k}{v:g}" for k, v in sel.items())
            for stat in ds["stat"].values:
                for dist in ("ks", "w1"):
                    if dist not in ds:
                        continue
                    fig = plot_convergence(ds, str(stat), dist, sel=sel)
                    safe = str(stat).replace(":", "").replace(",", "")
                    path = os.path.join(out_dir, f"convergence_{dist}_{safe}{tag}.png")
                    _save(fig, path)
                    written.append(path)
                    log(f"  figure  {path}")
    if "gamma" in ds.dims and "tau0" in ds.dims:
        for r in ds["ratio"].values:
            fig = plot_stability(ds, sel={"ratio": r})
            path = os.path.join(out_dir, f"stability_dn{r:g}.png")
            _save(fig, path)
            written.append(path)
            log(f"  figure  {path}")
    if not written:
        raise CovsdeInputError(f"{store}: nothing to draw (a convergence figure needs a finite "
                               f"source and a width axis; a stability map gamma and tau0 axes)")
    return written
