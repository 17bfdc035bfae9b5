"""Causal vs bidirectional shaped attention: the law of ρ_{0,j} and V_jj against token position j.

``python -m compare.figures.masked --out runs/masked`` runs the SDE and the reduced finite
network of the same shaped block (same γ, τ0) with the complete and the causal mask
(docs/theory.md §3.5) and draws, at each d/n ∈ {0.25, 1}, the median and 10–90 % band of
ρ_{0,j} and of V_jj against j (SDE: lines and bands; finite network: markers with bars).
Writes ``masked_positions.png`` and ``.pdf`` and the datasets, and the dead-fraction maps
over (γ, τ0) of shaped attention with the complete, sliding (w = 1) and causal masks
(``stability_map.png`` / ``.pdf``). Plot functions take an
optional ``ax`` and return the Figure; nothing here selects a matplotlib backend.
"""
import argparse
import os

import numpy as np

MASK_COLORS = {"complete": "tab:blue", "causal": "tab:red"}
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


def run_masked_positions(out, m=8, gamma=0.5, tau0=1.0, rho0=0.2, sde_paths=4000,
                         finite_paths=1000, width=128, seed=0):
    """Run SDE and reduced finite networks for both masks to T = 1; save datasets and the
    figure under ``out``; return the Figure."""
    import finite
    import sde
    from sde.io import write_dataset

    os.makedirs(out, exist_ok=True)
    V0 = sde.equicorrelated(m, rho0)
    runs = {}
    for mask in ("complete", "causal"):
        model = sde.ShapedBlock(gamma, tau0, mask=mask)
        ds = sde.simulate(model, V0, t_end=1.0, dt=0.01, n_paths=sde_paths, seed=seed,
                          save_every=25)
        fin = finite.sample(model, V0, width=width, n_paths=finite_paths, seed=seed + 1,
                            t_end=1.0, save_every=width // 4)
        write_dataset(ds, os.path.join(out, f"sde_{mask}.nc"))
        write_dataset(fin, os.path.join(out, f"finite_{mask}.nc"))
        runs[(mask, "SDE")] = ds
        runs[(mask, "finite")] = fin
    title = (f"shaped block, γ = {gamma}, τ0 = {tau0}, m = {m}, ρ0 = {rho0}: causal vs "
             f"complete mask; SDE ({sde_paths} paths, bands 10–90 %) vs finite n = {width} "
             f"({finite_paths} paths)")
    fig = plot_masked_positions(runs, title=title)
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out, f"masked_positions.{ext}"), dpi=130)
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


def plot_stability_maps(maps, gammas, tau0s, axes=None, title=None):
    """One heat map of the dead fraction per mask: ``maps`` {label: array (γ, τ0)}.
    Returns the Figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, len(maps), figsize=(4.2 * len(maps), 3.6),
                                 constrained_layout=True, squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, (label, dead) in zip(axes, maps.items()):
        im = ax.imshow(dead, origin="lower", cmap="magma_r", vmin=0, vmax=1, aspect="auto")
        for i in range(dead.shape[0]):
            for j in range(dead.shape[1]):
                ax.text(j, i, f"{dead[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dead[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(tau0s)), [f"{t:g}" for t in tau0s])
        ax.set_yticks(range(len(gammas)), [f"{g:g}" for g in gammas])
        ax.set_xlabel("τ0")
        ax.set_ylabel("γ")
        ax.set_title(label, fontsize=9)
    fig.colorbar(im, ax=list(axes), label="dead fraction at T")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def run_stability_maps(out, gammas=(0.3, 0.5, 0.7, 0.9), tau0s=(0.4, 0.6, 0.8, 1.0, 1.5),
                       m=8, n_paths=1000, seed=0):
    """Dead-fraction maps of shaped attention with the complete and the sliding (w = 1) mask;
    saves ``stability_map.png`` / ``.pdf`` under ``out``; returns the Figure."""
    os.makedirs(out, exist_ok=True)
    masks_kw = {"complete": {}, "sliding w = 1": dict(mask="sliding", window=1),
                "causal": dict(mask="causal")}
    maps = {k: stability_map(kw, gammas, tau0s, m=m, n_paths=n_paths, seed=seed)
            for k, kw in masks_kw.items()}
    fig = plot_stability_maps(maps, gammas, tau0s, title=(
        f"shaped attention SDE, m = {m}, ρ0 = 0.2, T = 1, dt = 0.01, {n_paths} paths per "
        f"cell: dead fraction (blow-up or cone exit; mostly cone exits, which shrink with dt: "
        f"step-dependent, docs/theory.md §4.4)"))
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out, f"stability_map.{ext}"), dpi=130)
    return fig, maps


def main(argv=None):
    import matplotlib

    matplotlib.use("Agg")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/masked")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    run_masked_positions(args.out, seed=args.seed)
    _, maps = run_stability_maps(args.out, seed=args.seed)
    for k, v in maps.items():
        print(k, np.array2string(v, precision=2))
    print(f"wrote {args.out}/masked_positions.png, stability_map.png and .pdf")


if __name__ == "__main__":
    main()
