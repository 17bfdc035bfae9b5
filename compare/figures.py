"""Paper-style figures (matplotlib), drawn from saved datasets only.

One colour per source, used in every figure: :data:`COLORS`.
"""
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .statistics import correlation, quantile_band  # noqa: E402

COLORS = {"SDE": "tab:blue", "ODE": "black", "finite": "tab:orange"}


def source_color(label, ds=None):
    """The colour of a source: from the label's prefix, else from the dataset's ``source``."""
    for key, col in COLORS.items():
        if label.startswith(key):
            return col
    if ds is not None:
        src = str(ds.attrs.get("source", ""))
        if src.startswith("finite"):
            return COLORS["finite"]
        if src == "sde-ode":
            return COLORS["ODE"]
        if src.startswith("sde"):
            return COLORS["SDE"]
    return None


def plot_trajectories(datasets, out, pair=(0, 1), title=None):
    """Median and 10–90 % band of ρ_ab vs t for each labelled dataset; save to ``out``.

    datasets: dict label → dataset (labels starting with SDE / ODE / finite pick the
    colour). A one-path dataset (ODE) is drawn as a line. Returns the Figure.
    """
    a, b = pair
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for label, ds in datasets.items():
        rho = correlation(ds["V"], a, b)
        col = source_color(label, ds)
        t = ds["time"].values
        if ds.sizes["path"] == 1:
            ax.plot(t, rho.isel(path=0).values, color=col, lw=2, ls="--", label=label)
            continue
        q = quantile_band(rho)
        ax.fill_between(t, q.sel(quantile=0.1), q.sel(quantile=0.9), color=col, alpha=0.25,
                        label=f"{label} 10–90 %")
        for qq in (0.1, 0.9):
            ax.plot(t, q.sel(quantile=qq), color=col, lw=0.8)
        ax.plot(t, q.sel(quantile=0.5), color=col, lw=2, label=f"{label} median")
    ax.set_xlabel("t = depth / width")
    ax.set_ylabel(rf"correlation $\rho_{{{a}{b}}}$")
    if title:
        ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return fig
