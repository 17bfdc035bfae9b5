"""The ``ln_equilibria`` figure: attention + LayerNorm with equilibria of every rank
(Wu et al.; docs/theory.md §2.4e), next to stacks that collapse.

Runs (literal finite networks, causal mask, V0 = I, Haar-random initial frames):

* the construction of :mod:`finite.ln_equilibria` with LayerNorm after each layer;
* the same fixed weights without LayerNorm;
* the standard stack: Gaussian weights, LayerNorm after each layer.

Panels: μ(X)/‖X‖_F vs depth (example paths of each final rank; median and 10–90 % band of the
two collapsing stacks); numerical rank of V vs depth for the same examples; the share of
settled paths at each final rank. Every number in the title and caption comes from the runs.
"""
import tempfile

import numpy as np

from finite import sample
from finite.ln_equilibria import numerical_rank, write_weights
from finite.unshaped import AttentionOnly

from ..collapse import consensus_distance

#: m tokens, H heads, width n, sharpness β of the construction
SETUP = dict(m=3, heads=3, width=24, beta=4.0)
SIZES = {"tiny": dict(depth=60, paths=30), "quick": dict(depth=400, paths=200),
         "full": dict(depth=800, paths=400)}
#: settled: max |V_L − V_{L−window}| below this
SETTLE_TOL, SETTLE_WINDOW = 1e-8, 100
#: μ/‖X‖ below this is drawn at it (μ from V has no digits below ~1e-8)
FLOOR = 1e-8
RANK_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]


def ln_equilibria_runs(size, seed):
    """{label: dataset} of the three stacks (see the module docstring)."""
    cfg = SIZES[size]
    m, H, n, beta = SETUP["m"], SETUP["heads"], SETUP["width"], SETUP["beta"]
    kw = dict(width=n, depth=cfg["depth"], n_paths=cfg["paths"], save_every=1, progress=False)
    with tempfile.TemporaryDirectory() as d:
        q, k, v = write_weights(d, n, H, beta, seed=0)
        built = AttentionOnly(layernorm=True, heads=H, mask="causal", value_init=v,
                              query_init=q, key_init=k)
        runs = {"construction + LN": sample(built, np.eye(m), seed=seed, **kw),
                "construction, no LN": sample(built.replace(layernorm=False), np.eye(m),
                                              seed=seed + 1, **kw)}
    runs["Gaussian weights + LN"] = sample(AttentionOnly(layernorm=True, heads=H,
                                                         mask="causal"),
                                           np.eye(m), seed=seed + 2, **kw)
    return runs


def summarise(ds):
    """(final rank per path, settled mask, rank (path, depth), μ/‖X‖ (path, depth))."""
    V = ds.V.values
    rank = numerical_rank(V)
    w = min(SETTLE_WINDOW, V.shape[1] - 1)
    settled = np.abs(V[:, -1] - V[:, -1 - w]).max(axis=(1, 2)) < SETTLE_TOL
    return rank[:, -1], settled, rank, consensus_distance(V)


def plot_ln_equilibria(runs, axes=None, examples=2):
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.3), constrained_layout=True,
                                 gridspec_kw=dict(width_ratios=[1.3, 1.0, 0.75]))
    else:
        fig = axes[0].figure
    main = runs["construction + LN"]
    m = main.sizes["token_a"]
    final, settled, rank, mu = summarise(main)
    x = main.depth.values
    for k in range(1, m + 1):
        idx = np.flatnonzero(settled & (final == k))[:examples]
        for j, i in enumerate(idx):
            c = RANK_COLORS[(k - 1) % len(RANK_COLORS)]
            lab = f"construction + LN, final rank {k}" if j == 0 else None
            axes[0].plot(x, np.maximum(mu[i], FLOOR), color=c, lw=1.3, label=lab)
            axes[1].step(x, rank[i] + 0.06 * (j - 0.5), where="post", color=c, lw=1.3)
    for label, color in (("construction, no LN", "#555555"), ("Gaussian weights + LN", "#D55E00")):
        mu_c = np.maximum(consensus_distance(runs[label].V.values), FLOOR)
        q = np.nanquantile(mu_c, [0.1, 0.5, 0.9], axis=0)
        xx = runs[label].depth.values
        axes[0].fill_between(xx, q[0], q[2], color=color, alpha=0.18, lw=0)
        axes[0].plot(xx, q[1], color=color, lw=1.6, ls="--", label=f"{label} (median, 10–90 %)")
    axes[0].set_yscale("log")
    for ax in axes[:2]:
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, x[-1])
    axes[0].set_xlabel("depth (layers)")
    axes[0].set_ylabel(f"μ(X)/‖X‖$_F$ (drawn at {FLOOR:g} below it)")
    axes[0].legend(fontsize=7.5, loc="lower left")
    axes[0].set_title("distance to the rank-one consensus set")
    axes[1].set_yticks(range(1, m + 1))
    axes[1].set_ylim(0.5, m + 0.5)
    axes[1].set_xlabel("depth (layers)")
    axes[1].set_ylabel("numerical rank of V (eigenvalues > 1e-9 × largest)")
    axes[1].set_title(f"same example paths ({examples} per final rank)")
    counts = np.bincount(final[settled], minlength=m + 1)[1:]
    n_paths = final.size
    axes[2].bar(np.arange(1, m + 1), counts / n_paths,
                color=[RANK_COLORS[k % len(RANK_COLORS)] for k in range(m)])
    for k, c in enumerate(counts, start=1):
        axes[2].text(k, c / n_paths, str(c), ha="center", va="bottom", fontsize=8)
    axes[2].set_xticks(range(1, m + 1))
    axes[2].set_xlabel("rank of the settled state")
    axes[2].set_ylabel("share of paths")
    axes[2].set_title(f"{settled.sum()} of {n_paths} paths settled by depth {int(x[-1])}")
    fig.suptitle(f"Attention + LayerNorm with equilibria of every rank (Wu et al.; this "
                 f"project's construction): m = {m}, n = {int(main.attrs['width'])}, "
                 f"{int(main.attrs['heads'])} heads, causal mask, Haar-random X0 with V0 = I")
    return fig


def caption(runs):
    main = runs["construction + LN"]
    final, settled, _, _ = summarise(main)
    m = main.sizes["token_a"]
    counts = np.bincount(final[settled], minlength=m + 1)[1:]
    collapsed = {lab: int((consensus_distance(runs[lab].V.values[:, -1]) < 1e-6).sum())
                 for lab in ("construction, no LN", "Gaussian weights + LN")}
    L = int(main.depth.values[-1])
    return (f"Attention-only stacks, causal mask, m = {m} tokens, literal finite networks "
            f"from Haar-random initial frames (V0 = I). Construction (docs/theory.md §2.4e): "
            f"rank-one value projectors per head and sharp block-diagonal queries/keys (β = "
            f"{SETUP['beta']:g}). With LayerNorm, {int(settled.sum())} of {final.size} paths "
            f"settle by depth {L} (V moves less than {SETTLE_TOL:g} over the last "
            f"{SETTLE_WINDOW} layers), at ranks " + ", ".join(
                f"{k}: {c}" for k, c in enumerate(counts, start=1)) +
            f"; a settled path keeps its rank. The same weights without LayerNorm, and the "
            f"standard stack (Gaussian weights) with LayerNorm, collapse: μ/‖X‖ < 1e-6 at "
            f"depth {L} in {collapsed['construction, no LN']} and "
            f"{collapsed['Gaussian weights + LN']} of {final.size} paths. μ/‖X‖ is computed "
            f"from V, which has no digits below ~1e-8.")


def draw_ln_equilibria(size, seed, save):
    """Compute the runs and hand the Figure to ``save(fig, stem, caption)``."""
    runs = ln_equilibria_runs(size, seed)
    save(plot_ln_equilibria(runs), "ln_equilibria", caption(runs))


__all__ = ["SETUP", "SIZES", "ln_equilibria_runs", "plot_ln_equilibria", "caption",
           "draw_ln_equilibria"]
