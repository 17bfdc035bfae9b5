"""Causal vs bidirectional shaped attention: the law of ρ_{0,j} and V_jj against token position j,
and the SDE's dead fraction over (γ, τ0) per mask.

Drawn by ``covsde figures --only masked_positions`` / ``--only masked_stability``
(:class:`compare.figures.gallery.Gallery`), which saves the datasets under ``DIR/data``:
the SDE and the reduced finite network of the same shaped block (same γ, τ0) with the
complete and the causal mask (docs/theory.md §3.5), and at each d/n ∈ {0.25, 1} the median
and 10–90 % band of ρ_{0,j} and of V_jj against j (SDE: lines and bands; finite network:
markers with bars); and the dead-fraction maps over (γ, τ0) of shaped attention with the
complete, sliding (w = 1) and causal masks, with their table (CSV). Plot functions take an
optional ``ax`` and return the Figure; nothing here selects a matplotlib backend.
"""
import numpy as np

MASK_COLORS = {"complete": "tab:blue", "causal": "tab:red"}
#: the shaped block of ``masked_positions``
MASKED_BLOCK = dict(gamma=0.5, tau0=1.0, rho0=0.2)
#: the masks of ``masked_stability``: label → mask parameters of ShapedAttention
STABILITY_MASKS = {"complete": {}, "sliding w = 1": dict(mask="sliding", window=1),
                   "causal": dict(mask="causal")}
QUANTILES = (0.1, 0.5, 0.9)


def position_quantiles(ds, t, stat):
    """Quantiles (3, m) over surviving paths at the saved time nearest t of ``stat``:
    ``"rho0"`` (ρ_{0,j}) or ``"diag"`` (V_jj), for every token j."""
    i = int(np.argmin(np.abs(ds.time.values - t)))
    V = ds.V.values[:, i]
    V = V[np.isfinite(V).all(axis=(1, 2))]
    d = np.diagonal(V, axis1=1, axis2=2)
    x = V[:, 0, :] / np.sqrt(d[:, :1] * d) if stat == "rho0" else d
    return np.quantile(x, QUANTILES, axis=0)


def plot_positions(runs, t, stat, ax=None):
    """One panel: quantiles of ``stat`` against token position at time t for every run.

    runs: {(mask, source): dataset}, source "SDE" (line + band) or "finite" (markers + bars).
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    fig = ax.figure
    for (mask, source), ds in runs.items():
        q = position_quantiles(ds, t, stat)
        j = np.arange(q.shape[1])
        col = MASK_COLORS.get(mask, "gray")
        if source == "SDE":
            ax.fill_between(j, q[0], q[2], color=col, alpha=0.18)
            ax.plot(j, q[1], color=col, lw=2, label=f"{mask} SDE")
        else:
            jj = j + (0.12 if mask == "causal" else -0.12)
            ax.errorbar(jj, q[1], yerr=[q[1] - q[0], q[2] - q[1]], fmt="o", ms=4, color=col,
                        mfc="white", capsize=2, lw=1, label=f"{mask} finite")
    ax.set_xlabel("token position j")
    ax.set_ylabel(r"$\rho_{0,j}$" if stat == "rho0" else r"$V_{jj}$")
    ax.set_title(f"d/n = {t:g}", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def plot_masked_positions(runs, times=(0.25, 1.0), title=None):
    """The 2 × len(times) grid: rows ρ_{0,j} and V_jj, columns d/n. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(times), figsize=(4.6 * len(times), 7.0),
                             constrained_layout=True, squeeze=False)
    for c, t in enumerate(times):
        plot_positions(runs, t, "rho0", axes[0, c])
        plot_positions(runs, t, "diag", axes[1, c])
        axes[1, c].set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def stability_map(mask_kw, gammas, tau0s, m=8, rho0=0.2, t_end=1.0, dt=0.01, n_paths=1000,
                  seed=0):
    """Dead fraction at ``t_end`` of the shaped-attention SDE over the (γ, τ0) grid:
    array (len(gammas), len(tau0s)). A dead fraction measures the SDE only once it no longer
    changes with dt (docs/theory.md §4.4)."""
    import sde

    V0 = sde.equicorrelated(m, rho0)
    out = np.empty((len(gammas), len(tau0s)))
    for i, g in enumerate(gammas):
        for j, t in enumerate(tau0s):
            ds = sde.simulate(sde.ShapedAttention(g, t, **mask_kw), V0, t_end=t_end, dt=dt,
                              n_paths=n_paths, seed=seed, save_every=10 ** 9, progress=False)
            out[i, j] = ds.attrs["n_dead"] / n_paths
    return out


def plot_stability_maps(table, axes=None, title=None):
    """One heat map of the dead fraction per mask from a table with columns ``mask``,
    ``gamma``, ``tau0``, ``dead_fraction`` (:meth:`Gallery.masked_stability_table`), each cell
    labelled with its value. Returns the Figure."""
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(table["mask"]))
    gammas = sorted(set(table["gamma"]))
    tau0s = sorted(set(table["tau0"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.6),
                                 constrained_layout=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, label in zip(axes, labels):
        rows = table[table["mask"] == label]
        dead = np.full((len(gammas), len(tau0s)), np.nan)
        for g, t, d in zip(rows["gamma"], rows["tau0"], rows["dead_fraction"]):
            dead[gammas.index(g), tau0s.index(t)] = d
        im = ax.imshow(dead, origin="lower", cmap="magma_r", vmin=0, vmax=1, aspect="auto")
        for i in range(dead.shape[0]):
            for j in range(dead.shape[1]):
                ax.text(j, i, f"{dead[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dead[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(tau0s)), [f"{t:g}" for t in tau0s])
        ax.set_yticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        ax.set_xlabel("τ0")
        ax.set_ylabel("γ")
        ax.set_title(f"mask: {label}", fontsize=9)
    fig.colorbar(im, ax=list(axes), label="dead fraction at T")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
