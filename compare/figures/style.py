"""Paper-style figures (matplotlib), drawn from datasets; shared styling.

Plot functions take an optional ``ax``, return the Figure and never save or switch the
backend: the caller saves (the CLI uses :func:`save_figure`, which writes atomically and turns
an unwritable path into a one-line error). In Jupyter the figures show inline.

Colours: the Okabe–Ito colour-blind-safe palette, one colour per source
(:data:`COLORS`); overlapping bands are also told apart by hatching and outlines
(:data:`HATCHES`), never by colour alone.
"""
import os
import textwrap

import matplotlib.pyplot as plt

from sde.errors import CovsdeInputError

from ..statistics import correlation, quantile_band

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "purple": "#CC79A7"}
COLORS = {"SDE": OKABE_ITO["blue"], "ODE": OKABE_ITO["black"],
          "finite": OKABE_ITO["vermillion"]}
HATCHES = {"SDE": "////", "finite": "\\\\\\\\", "ODE": ""}
SPARE = (OKABE_ITO["green"], OKABE_ITO["purple"], OKABE_ITO["orange"], OKABE_ITO["sky"])
SPARE_HATCHES = ("xx", "..", "++", "oo")


def source_kind(label, ds=None):
    """'SDE', 'ODE', 'finite' or None, from the label's prefix or the dataset's ``source``."""
    for key in COLORS:
        if label.startswith(key):
            return key
    if ds is not None:
        src = str(ds.attrs.get("source", ""))
        if src.startswith("finite"):
            return "finite"
        if src == "sde-ode":
            return "ODE"
        if src.startswith("sde"):
            return "SDE"
    return None


def source_color(label, ds=None):
    """The colour of a source: from the label's prefix, else from the dataset's ``source``."""
    kind = source_kind(label, ds)
    return COLORS.get(kind) if kind else None


def styles(datasets):
    """label → (colour, hatch): the source's, or a spare one where two sources share it."""
    used, out = set(), {}
    spare = iter(zip(SPARE, SPARE_HATCHES))
    for label, ds in datasets.items():
        kind = source_kind(label, ds)
        col, hatch = (COLORS[kind], HATCHES[kind]) if kind else (None, "")
        if col is None or col in used:
            col, hatch = next(spare, ("#777777", ""))
        used.add(col)
        out[label] = (col, hatch)
    return out


def params_text(ds):
    """The model parameters of a dataset in words (for titles), from its attrs."""
    a = ds.attrs
    names = {"block": "shaped block", "attention": "shaped attention",
             "mlp": "shaped MLP (Li–Nica–Roy)", "mlp-res": "residual shaped MLP"}
    parts = [names.get(str(a.get("arch")), str(a.get("arch", "?")))]
    if "m" in a:
        parts.append(f"m = {int(a['m'])}")
    for key, sym in (("gamma", "γ"), ("tau0", "τ0"), ("heads", "H"), ("c_plus", "c₊"),
                     ("c_minus", "c₋"), ("activation", "activation"), ("a", "a")):
        if key in a:
            v = a[key]
            parts.append(f"{sym} = {v:.4g}" if not isinstance(v, str) else f"{sym} = {v}")
    return ", ".join(parts)


def source_text(ds):
    """What a dataset is, in a few words: source, width or dt, paths."""
    a = ds.attrs
    src = str(a.get("source", "?"))
    if src.startswith("finite"):
        what = f"finite network ({a.get('sampler', src.split('-')[-1])}), n = {a.get('width')}"
    elif src == "sde-ode":
        what = f"ODE (RK4, dt = {a.get('dt', '?'):g})"
    else:
        what = f"SDE (Euler–Maruyama, dt = {a.get('dt', '?'):g})"
    return f"{what}, {ds.sizes['path']} path{'s' if ds.sizes['path'] != 1 else ''}"


def save_figure(fig, path, name="out", dpi=120, close=True):
    """Save ``fig`` at ``path`` atomically (``path.tmp.ext`` then rename).

    An unwritable location is a :class:`CovsdeInputError` naming ``name``; no partial file
    is left. Closes the figure unless ``close=False``.
    """
    ext = os.path.splitext(path)[1] or ".png"
    tmp = f"{path}.tmp{ext}"
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except OSError as exc:
        raise CovsdeInputError(f"{name}: cannot write {path} ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        if close:
            plt.close(fig)
    return path


def plot_trajectories(datasets, pair=(0, 1), title=None, ax=None):
    """Median and 10–90 % band of ρ_ab vs t for each labelled dataset; returns the Figure.

    datasets: dict label → dataset (labels starting with SDE / ODE / finite pick the
    colour). A one-path dataset (ODE) is drawn as a dashed line. Bands are hatched and
    outlined so that overlapping ones stay distinguishable. The legend sits below the axes.
    """
    a, b = pair
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8), constrained_layout=True)
    else:
        fig = ax.figure
    for label, ds in datasets.items():
        rho = correlation(ds["V"], a, b)
        col, hatch = styles(datasets)[label]
        t = ds["time"].values
        if ds.sizes["path"] == 1:
            ax.plot(t, rho.isel(path=0).values, color=col, lw=2, ls="--", label=label,
                    zorder=4)
            continue
        q = quantile_band(rho)
        ax.fill_between(t, q.sel(quantile=0.1), q.sel(quantile=0.9), facecolor=col,
                        alpha=0.15, edgecolor="none")
        ax.fill_between(t, q.sel(quantile=0.1), q.sel(quantile=0.9), facecolor="none",
                        edgecolor=col, hatch=hatch, lw=0, alpha=0.6,
                        label=f"{label}: 10–90 % band")
        for qq in (0.1, 0.9):
            ax.plot(t, q.sel(quantile=qq), color=col, lw=1.0)
        ax.plot(t, q.sel(quantile=0.5), color=col, lw=2.2, label=f"{label}: median")
    ax.set_xlabel("t = depth / width")
    ax.set_ylabel(rf"correlation $\rho_{{{a}{b}}}$ (paths alive at t)")
    if title:
        ax.set_title(textwrap.fill(title, 80), fontsize=8)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
              frameon=False)
    ax.grid(alpha=0.3)
    return fig
