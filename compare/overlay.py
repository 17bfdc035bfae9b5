"""Overlay figure: histogram + KDE of one statistic per source at chosen times."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from .figures import source_color  # noqa: E402
from .statistics import compute_stat  # noqa: E402


def plot_overlay(datasets, stat, times, out, title=None):
    """One panel per time: histogram + Gaussian KDE of ``stat`` for each labelled dataset.

    datasets: dict label → dataset; a one-path dataset (ODE) is a vertical line.
    Statistics over the paths alive at that time; the legend gives alive counts.
    """
    fig, axes = plt.subplots(1, len(times), figsize=(4.2 * len(times), 3.6), squeeze=False,
                             constrained_layout=True)
    colors = _distinct_colors(datasets)
    for ax, t in zip(axes[0], times):
        for label, ds in datasets.items():
            i = int(np.argmin(np.abs(ds["time"].values - t)))
            x = compute_stat(ds["V"], stat).values[:, i]
            x = x[np.isfinite(x)]
            col = colors[label]
            if ds.sizes["path"] == 1:
                if x.size:
                    ax.axvline(x[0], color=col, ls="--", lw=2, label=f"{label} (one path)")
                continue
            ax.hist(x, bins=50, density=True, color=col, alpha=0.3)
            if x.size > 2 and np.ptp(x) > 0:
                grid = np.linspace(x.min(), x.max(), 300)
                ax.plot(grid, scipy.stats.gaussian_kde(x)(grid), color=col,
                        label=f"{label} ({x.size} alive)")
        ax.set_title(f"t = d/n = {t:g}", fontsize=9)
        ax.set_xlabel(stat)
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
