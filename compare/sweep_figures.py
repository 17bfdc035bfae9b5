"""Figures drawn from a sweep STORE (``covsde figures --sweep STORE --out DIR``).

- :func:`plot_convergence`: a distance finite-vs-SDE of one statistic against width n,
  log-log, one line per d/n, with its noise floor (dotted) and an n^-1/2 reference line;
- :func:`plot_stability`: the dead fraction of a source over a (γ, τ0) grid as a heat map
  with Clopper–Pearson 95 % intervals (sweeps whose grid has gamma and tau0 axes).

Both take the dataset of :func:`compare.sweep.open_sweep`, an optional ``ax``, and return the
Figure; they use matplotlib's object API (no ``pyplot``, no backend switch).
:func:`figures_from_sweep` writes every figure a STORE allows.
"""
import itertools
import json
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from sde.errors import CovsdeInputError

DISTANCE_NAMES = {"ks": "KS", "w1": "W1"}


def _axis_pick(ds, keep, sel):
    """Select ``sel`` and squeeze size-1 axes; refuse other grid axes left with > 1 value."""
    sel = dict(sel or {})
    for k, v in list(sel.items()):
        if k not in ds.dims:
            raise CovsdeInputError(f"sel: the sweep has no axis {k!r}")
    ds = ds.sel(sel)
    grid_dims = [d for d in ds.dims if d not in ("stat", "source", "quantile")]
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
    paths = f"SDE {src['sde']['paths']} paths (dt {src['sde']['dt']:g})"
    if "finite" in src:
        paths += f", finite {src['finite']['sampler']} {src['finite']['paths']} paths"
    return f"{m['arch']}: " + ", ".join(parts) + f"; {paths}"


def _new_ax(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, constrained_layout=True)
    return fig, fig.add_subplot()


def plot_convergence(ds, stat="corr:0,1", distance="ks", ax=None, sel=None, title=None):
    """``distance`` (finite vs SDE) of ``stat`` against width, log-log, one line per d/n.

    ds: :func:`compare.sweep.open_sweep` output with ``ratio`` (R) and ``width`` (W) axes;
    other grid axes must be fixed by ``sel`` (or have one value). Draws the values (R lines
    of W points), the noise floor ``<distance>_noise_floor`` if present (dotted, same colour) and
    an n^-1/2 reference line through the first ratio's smallest width. Returns the Figure.
    """
    if "width" not in ds.dims or distance not in ds:
        raise CovsdeInputError(f"convergence needs a width axis and the distance {distance!r} "
                               f"(a sweep with a finite source)")
    if stat not in list(ds["stat"].values):
        raise CovsdeInputError(f"stat {stat!r} is not in the sweep "
                               f"({', '.join(map(str, ds['stat'].values))})")
    d = _axis_pick(ds.sel(stat=stat), ("ratio", "width"), sel)
    fig, ax = _new_ax(ax, (6.4, 4.4))
    n = d["width"].values.astype(float)
    ratios = d["ratio"].values
    colors = [_viridis(j, len(ratios)) for j in range(len(ratios))]
    floor_name = f"{distance}_noise_floor"   # compare.distances' column name
    for j, r in enumerate(ratios):
        y = d[distance].sel(ratio=r).transpose("width").values.astype(float)
        ax.plot(n, y, "o-", color=colors[j], lw=1.5, ms=5, label=f"d/n = {r:g}")
        if floor_name in d:
            f = d[floor_name].sel(ratio=r).transpose("width").values.astype(float)
            ax.plot(n, f, ":", color=colors[j], lw=1.2)
    y0 = d[distance].sel(ratio=ratios[0]).transpose("width").values.astype(float)
    if np.isfinite(y0[0]) and y0[0] > 0:
        ax.plot(n, y0[0] * (n / n[0]) ** -0.5, "--", color="0.4", lw=1, label=r"$\propto n^{-1/2}$")
    if floor_name in d:
        ax.plot([], [], ":", color="0.4", label="noise floor (same colour)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(n, [f"{int(w)}" for w in n])
    ax.xaxis.set_minor_locator(NullLocator())
    name = DISTANCE_NAMES.get(distance, distance)
    ax.set_xlabel("width n (finite network)")
    ax.set_ylabel(f"{name}(finite, SDE) of {stat}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    extra = ", ".join(f"{k} = {v.item():g}" for k, v in d.coords.items()
                      if k not in ("ratio", "width", "stat", "source", "quantile")
                      and v.ndim == 0 and np.issubdtype(v.dtype, np.number))
    ax.set_title(title or _wrap(f"{name} distance of {stat}, finite vs SDE at t = d/n; "
                                f"{_model_text(ds)}" + (f"; {extra}" if extra else "")),
                 fontsize=8)
    return fig


def plot_stability(ds, source="sde", ax=None, sel=None, title=None):
    """Dead fraction of ``source`` by t = ratio over the (γ, τ0) grid, as a heat map.

    ds: :func:`compare.sweep.open_sweep` output with ``gamma`` (G) and ``tau0`` (T) axes;
    other grid axes fixed by ``sel`` (default: the last ratio, the first value of any other
    axis). Cells show the dead % and its Clopper–Pearson 95 % interval; the colour scale
    runs from 0 to the largest interval end. Returns the Figure.
    """
    if "gamma" not in ds.dims or "tau0" not in ds.dims:
        raise CovsdeInputError("a stability map needs gamma and tau0 grid axes")
    sel = dict(sel or {})
    for d in ds.dims:
        if d in ("gamma", "tau0", "stat", "source", "quantile") or d in sel:
            continue
        sel[d] = ds[d].values[-1] if d == "ratio" else ds[d].values[0]
    d = _axis_pick(ds.sel(source=source), ("gamma", "tau0"), sel).transpose("gamma", "tau0", ...)
    frac = d["dead_fraction"].values.astype(float)
    lo = d["dead_fraction_ci95_low"].values.astype(float)
    hi = d["dead_fraction_ci95_high"].values.astype(float)
    gammas, taus = d["gamma"].values, d["tau0"].values
    fig, ax = _new_ax(ax, (1.5 * len(taus) + 2.8, 1.0 * len(gammas) + 2.0))
    vmax = max(float(np.nanmax(hi)) * 100, 1.0) if np.isfinite(hi).any() else 100.0
    im = ax.imshow(frac * 100, origin="lower", cmap="Reds", vmin=0, vmax=vmax, aspect="auto")
    for i in range(len(gammas)):
        for j in range(len(taus)):
            col = "white" if frac[i, j] * 100 > 0.6 * vmax else "black"
            ax.text(j, i, f"{_pct(frac[i, j])} %\n[{_pct(lo[i, j])}, {_pct(hi[i, j])}]",
                    ha="center", va="center", fontsize=8, color=col)
    ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
    ax.set_yticks(range(len(gammas)), [f"{g:g}" for g in gammas])
    ax.set_xlabel("attention temperature τ0")
    ax.set_ylabel("residual weight γ")
    fig.colorbar(im, ax=ax, label=f"dead {source} paths (%)")
    fixed = ", ".join(f"{k} = {d[k].item():g}" for k in sel if k in d.coords)
    ax.set_title(title or _wrap(f"Dead fraction of {source} paths by t = d/n "
                                f"({fixed}); % [95 % Clopper–Pearson]; {_model_text(ds)}"),
                 fontsize=8)
    return fig


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


def figures_from_sweep(store, out_dir, log=print):
    """Write every figure the sweep in ``store`` allows under ``out_dir`` (PNG); return paths.

    Convergence (per statistic, for KS and W1, and per value of any grid axis other than
    ratio and width) when the sweep has a finite source; stability maps (per ratio) when
    its grid has gamma and tau0 axes. Unfinished cells are drawn as gaps.
    """
    from .sweep import open_sweep

    ds = open_sweep(store, partial=True)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    if "width" in ds.dims:
        others = [d for d in ds.dims if d not in ("ratio", "width", "stat", "source",
                                                  "quantile")]
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
