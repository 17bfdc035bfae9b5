"""Overlay figures: the law of a statistic per source, side by side at chosen times.

Every panel uses bins shared by all its sources (and by every panel of a row), outlined
step histograms with a light hatched fill (overlaps stay readable), and, for statistics
with a known bounded support (ρ ∈ [−1, 1], V_aa ≥ 0, …), a Gaussian KDE corrected at the
boundary by reflection, so that it does not fall to half the histogram there. Heavy-tailed
statistics (anything but ρ) are clipped to pooled quantiles *per time* (each panel its own
x-range and bins: a tail that grows with t does not squash the early panels), and the
panel's title says so. Notes go in the titles, never over the bars; the legend sits outside
the panels, below them.
A one-path dataset (ODE) is a vertical dashed line. Plot functions return the Figure and do
not save it.
"""
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import scipy.stats

from sde.errors import CovsdeInputError

from .style import params_text, source_text, styles
from ..statistics import compute_stat, parse_stat, stat_label, support

TIME_ATOL = 1e-9
#: default pooled-quantile clip for unbounded statistics.
CLIP = (0.005, 0.995)


def time_index(ds, t, name="dataset"):
    """Index of time ``t`` in ``ds`` (tolerance 1e-9), else a clear error with the nearest."""
    grid = ds["time"].values
    i = int(np.argmin(np.abs(grid - t)))
    if abs(grid[i] - t) > TIME_ATOL * max(1.0, abs(t)):
        near = sorted(grid[np.argsort(np.abs(grid - t))[:2]])
        raise CovsdeInputError(f"time {t:g} is not saved in {name} (times {grid.min():g}–"
                               f"{grid.max():g}; nearest {', '.join(f'{x:g}' for x in near)})")
    return i


def reflected_kde(x, grid, low=None, high=None):
    """Gaussian KDE of ``x`` on ``grid`` with reflection at the known bounds ``low``/``high``
    (the mass a Gaussian kernel puts outside the support is folded back)."""
    kde = scipy.stats.gaussian_kde(x)
    y = kde(grid)
    if low is not None:
        y = y + kde(2 * low - grid)
    if high is not None:
        y = y + kde(2 * high - grid)
    return y


def _values(datasets, stat, t):
    out = {}
    for label, ds in datasets.items():
        x = compute_stat(ds, stat).values[:, time_index(ds, t, label)]
        out[label] = x[np.isfinite(x)]
    return out


def plot_overlay(datasets, stat, times, axes=None, title=None, xlabel=None, clip="auto",
                 kde=True, legend=True):
    """One panel per time: the law of ``stat`` for each labelled dataset; returns the Figure.

    datasets: dict label → dataset; a one-path dataset (ODE) is a vertical line.
    times: times present in every dataset (else a :class:`CovsdeInputError` naming the
    nearest saved times). Statistics over the paths alive at that time.
    axes: optional sequence of Axes, one per time (default: a new row of panels; shared x
    and y axes for a bounded statistic, each panel its own x-range for a clipped one —
    given axes must not share x then). clip: ``None``, a pair of pooled quantiles, or
    ``"auto"`` (none for ρ, :data:`CLIP` otherwise); the quantiles are taken per time over
    the pooled sources. kde: add the boundary-corrected KDE lines.
    """
    if isinstance(stat, str):
        pass
    else:
        raise CovsdeInputError(f"stat must be one statistic name like 'corr:0,1', got {stat!r}")
    times = [times] if np.isscalar(times) else list(times)
    if not times:
        raise CovsdeInputError("times must list at least one time")
    for label, ds in datasets.items():
        parse_stat(stat, ds.sizes["token_a"])
    if clip == "auto":
        clip = None if stat.startswith("corr:") else CLIP
    if axes is None:
        fig, axes = plt.subplots(1, len(times), figsize=(3.4 * len(times) + 0.6, 3.8),
                                 sharex=clip is None, sharey=clip is None, squeeze=False,
                                 constrained_layout=True)
        axes = list(axes[0])
    else:
        axes = list(np.ravel(axes))
        fig = axes[0].figure
    if len(axes) != len(times):
        raise CovsdeInputError(f"axes: need one Axes per time ({len(times)}), got {len(axes)}")
    low, high = support(stat)
    look = styles(datasets)
    values = [_values(datasets, stat, t) for t in times]
    multi = [lab for lab, ds in datasets.items() if ds.sizes["path"] > 1]

    def limits(pooled):
        lim = (np.quantile(pooled, clip) if clip is not None and pooled.size > 1
               else np.array([pooled.min(), pooled.max()]))
        if clip is None and low is not None and high is not None:
            lim = np.array([low, high])  # a bounded statistic: show its whole support
        elif clip is None:
            lim[0] = lim[0] if low is None else max(lim[0], low)
            lim[1] = lim[1] if high is None else min(lim[1], high)
        if lim[1] <= lim[0]:
            lim = np.array([lim[0] - 0.5, lim[0] + 0.5])
        return lim

    # without a clip: one x-range and one set of bins for every panel of the row; with a
    # clip (heavy tails): each time its own pooled quantiles, x-range and bins
    row_pool = np.concatenate([v[lab] for v in values for lab in multi] or [np.zeros(1)])
    handles = {}
    for ax, t, vals in zip(axes, times, values):
        pooled = (np.concatenate([vals[lab] for lab in multi] or [np.zeros(1)])
                  if clip is not None else row_pool)
        lim = limits(pooled)
        edges = np.linspace(lim[0], lim[1], 41)
        grid = np.linspace(lim[0], lim[1], 400)
        counts = []
        for label, ds in datasets.items():
            x = vals[label]
            col, hatch = look[label]
            if ds.sizes["path"] == 1:
                if x.size:
                    h = ax.axvline(x[0], color=col, ls="--", lw=1.8, zorder=5)
                    handles.setdefault(label, (h, f"{label} (one deterministic path)"))
                continue
            counts.append(f"{label.split(':')[0]} ({x.size})")
            if x.size == 0:
                continue
            # density over ALL alive values: clipped bins hold the share inside the range
            w = np.full(x.size, 1.0 / (x.size * (edges[1] - edges[0])))
            ax.hist(x, bins=edges, weights=w, histtype="stepfilled", facecolor=col,
                    alpha=0.12, edgecolor="none")
            ax.hist(x, bins=edges, weights=w, histtype="stepfilled", facecolor="none",
                    edgecolor=col, hatch=hatch, alpha=0.45, lw=0)
            h = ax.hist(x, bins=edges, weights=w, histtype="step", color=col, lw=1.3)[2][0]
            handles.setdefault(label, (h, f"{label}: histogram"))
            inside = x[(x >= lim[0]) & (x <= lim[1])]
            if kde and inside.size > 2 and np.ptp(inside) > 0:
                y = reflected_kde(inside, grid, low, high) * inside.size / x.size
                (k,) = ax.plot(grid, y, color=col, lw=2.0)
                corr = " (reflected at the bounds)" if (low, high) != (None, None) else ""
                handles.setdefault(label + " kde", (k, f"{label}: KDE{corr}"))
        outside = (np.mean((pooled < lim[0]) | (pooled > lim[1])) if clip is not None
                   else 0.0)
        head = [f"t = d/n = {t:g}", f"paths used: {', '.join(counts)}"]
        if clip is not None:  # in the title: a note inside the axes could cover bars
            head.append(f"x: pooled {100 * clip[0]:g}–{100 * clip[1]:g} % quantiles at this t")
            head.append(f"({100 * outside:.2g} % of the values outside)")
        ax.set_title("\n".join(textwrap.fill(h, 44) for h in head), fontsize=8)
        ax.set_xlim(lim[0], lim[1])
        ax.set_xlabel(xlabel or stat_label(stat))
        ax.set_ylabel("density")
        ax.grid(alpha=0.25)
    if legend and handles:
        fig.legend([h for h, _ in handles.values()], [s for _, s in handles.values()],
                   loc="outside lower center", ncol=min(3, len(handles)), fontsize=7,
                   frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def pick_times(times, k=4):
    """At most ``k`` of ``times`` spread over the range (always the last)."""
    times = sorted(times)
    if len(times) <= k:
        return times
    idx = sorted(set(int(round(i)) for i in np.linspace(0, len(times) - 1, k + 1)[1:]))
    return [times[i] for i in idx]


def compare_figure(datasets, stats, times, title=None):
    """``covsde compare --plot``: one row per statistic, one column per time (at most 4,
    spread over ``times``); a bounded statistic's row shares its axes, a heavy-tailed one
    gives each time its own x-range (:func:`plot_overlay`); model parameters in the title."""
    if isinstance(stats, str):
        raise CovsdeInputError(f"stats must be a list of statistic names, not the single "
                               f"string {stats!r}")
    times = pick_times(times)
    fig, axes = plt.subplots(len(stats), len(times), figsize=(3.4 * len(times) + 0.6,
                                                              3.5 * len(stats) + 1.0),
                             squeeze=False, constrained_layout=True)
    for i, s in enumerate(stats):
        if s.startswith("corr:"):  # bounded: the row shares its axes
            for ax in axes[i][1:]:
                ax.sharex(axes[i][0])
                ax.sharey(axes[i][0])
        plot_overlay(datasets, s, times, axes=axes[i], legend=(i == 0))
    first = next(iter(datasets.values()))
    if title is None:
        title = textwrap.fill(params_text(first), 100) + "\n" + textwrap.fill("; ".join(
            f"{lab}: {source_text(ds)}" for lab, ds in datasets.items()), 110)
    fig.suptitle(title, fontsize=9)
    return fig
