"""Overlay figure: histogram + KDE of one statistic per source at chosen times."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from .figures import source_color  # noqa: E402
from .statistics import compute_stat  # noqa: E402


def plot_overlay(datasets, stat, times, out, title=None, xlabel=None, xlim_quantiles=None):
    """One panel per time: histogram + Gaussian KDE of ``stat`` for each labelled dataset.

    datasets: dict label → dataset; a one-path dataset (ODE) is a vertical line.
    Statistics over the paths alive at that time; the legend gives alive counts.
    xlabel: axis label (default: the statistic's name).
    xlim_quantiles: optional (q_low, q_high): show only that quantile range of the pooled
    values (heavy tails); densities stay normalised over all alive paths, and the panel
    says which fraction of paths lies outside.
    """
    fig, axes = plt.subplots(1, len(times), figsize=(4.2 * len(times), 3.6), squeeze=False,
                             constrained_layout=True)
    colors = _distinct_colors(datasets)
    for ax, t in zip(axes[0], times):
        values = {}
        for label, ds in datasets.items():
            i = int(np.argmin(np.abs(ds["time"].values - t)))
            x = compute_stat(ds["V"], stat).values[:, i]
            values[label] = x[np.isfinite(x)]
        lim = None
        if xlim_quantiles is not None:
            pooled = np.concatenate([x for label, x in values.items()
                                     if datasets[label].sizes["path"] > 1] or [np.zeros(0)])
            if pooled.size > 1:
                lim = tuple(np.quantile(pooled, xlim_quantiles))
                outside = np.mean((pooled < lim[0]) | (pooled > lim[1]))
                ax.text(0.98, 0.02, f"x range: pooled quantiles {xlim_quantiles[0]:g}–"
                        f"{xlim_quantiles[1]:g}\n({100 * outside:.1f} % of values outside)",
                        transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
        for label, ds in datasets.items():
            x = values[label]
            col = colors[label]
            if ds.sizes["path"] == 1:
                if x.size:
                    ax.axvline(x[0], color=col, ls="--", lw=2, label=f"{label} (one path)")
                continue
            if lim is None:
                ax.hist(x, bins=50, density=True, color=col, alpha=0.3)
            elif x.size:
                edges = np.linspace(lim[0], lim[1], 51)
                ax.hist(x, bins=edges, weights=np.full(x.size, 1 / (x.size * np.diff(edges)[0])),
                        color=col, alpha=0.3)
            # with a limited x range the KDE is fitted to the values inside it (a tail
            # would set the bandwidth) and scaled by their share of all alive paths
            xk = x if lim is None else x[(x >= lim[0]) & (x <= lim[1])]
            if xk.size > 2 and np.ptp(xk) > 0:
                grid = np.linspace(xk.min(), xk.max(), 300)
                ax.plot(grid, scipy.stats.gaussian_kde(xk)(grid) * (xk.size / x.size),
                        color=col, label=f"{label} ({x.size} alive)")
        if lim is not None:
            ax.set_xlim(*lim)
        ax.set_title(f"t = d/n = {t:g}", fontsize=9)
        ax.set_xlabel(xlabel or stat)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


_SPARE = ("tab:green", "tab:red", "tab:purple", "tab:brown")


def _distinct_colors(datasets):
    """The source colour of each dataset, or a spare one where two sources share it."""
    used, out = set(), {}
    spare = iter(_SPARE)
    for label, ds in datasets.items():
        col = source_color(label, ds)
        if col is None or col in used:
            col = next(spare)
        used.add(col)
        out[label] = col
    return out
