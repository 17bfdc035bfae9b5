"""Rank-collapse figures (docs/theory.md §2.4, §7): finite networks only, literal sampler.

* ``rank_collapse``: token similarity and μ/‖X‖ vs depth (median, 10–90 % band) for post-LN,
  pre-LN, attention-only, vanilla with E-SPA and U-SPA, Value-SkipInit, shaped attention and
  shaped block, at two widths, same m and depth;
* ``similarity_removal``: token similarity vs depth for post-LN with θ ∈ {0, 0.5, 1}, with the
  bound B_d of §2.4b;
* ``espa_kernel`` (:mod:`compare.figures.espa`): E-SPA against its target kernel;
* ``ln_equilibria`` (:mod:`compare.figures.ln_equilibria`): attention + LN equilibria of every
  rank.

Plot functions take optional axes and return the Figure; they never choose the backend.
:func:`make_collapse_figures` computes (or reuses) datasets and saves PNG + PDF.
"""
import json
import math
import os

import numpy as np

import sde
from finite import sample
from finite.unshaped import AttentionOnly, PostLN, PreLN, Vanilla

from ..collapse import token_similarity
from ..collapse_rate import mask_asymptotic_rate
from .rates import RATE_CAPTIONS, draw_rate_figure

#: Okabe–Ito colour-blind-safe palette
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000", "#999999"]
SIZES = {
    "tiny": dict(m=8, widths=(16, 32), depth=6, paths=6),
    "quick": dict(m=16, widths=(32, 64), depth=16, paths=24),
    "full": dict(m=16, widths=(64, 256), depth=32, paths=100),
}


def rank_collapse_models():
    """(label, model) of the rank-collapse figure."""
    return [
        ("post-LN", PostLN()), ("pre-LN", PreLN()), ("attention-only", AttentionOnly()),
        ("vanilla E-SPA", Vanilla(attention="e-spa")),
        ("vanilla U-SPA", Vanilla(attention="u-spa")),
        ("vanilla Value-SkipInit", Vanilla(attention="value-skipinit")),
        ("shaped attention", sde.ShapedAttention(0.5, 1.0)),
        ("shaped block", sde.ShapedBlock(0.5, 1.0)),
    ]


def _band(ax, x, Y, color, label, ls="-"):
    q = np.nanquantile(Y, [0.1, 0.5, 0.9], axis=0)
    ax.fill_between(x, q[0], q[2], color=color, alpha=0.18, lw=0)
    ax.plot(x, q[0], color=color, lw=0.6, ls=":")
    ax.plot(x, q[2], color=color, lw=0.6, ls=":")
    ax.plot(x, q[1], color=color, lw=1.6, ls=ls, label=label)


def _figure(ax, nrows=1, ncols=1, **kw):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, np.atleast_2d(ax)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plot_rank_collapse(runs, m, depth, axes=None):
    """runs: {width: [(label, dataset), ...]}. Rows: token similarity, −log μ/‖X‖ (log
    scale: both the slow and the doubly exponential collapse are visible; no floor)."""
    widths = sorted(runs)
    fig, axes = _figure(axes, 2, len(widths), figsize=(5.2 * len(widths), 7.2), sharex=True,
                        sharey="row", constrained_layout=True)
    for j, n in enumerate(widths):
        for k, (label, ds) in enumerate(runs[n]):
            x = ds.depth.values
            V = ds.V.values
            c = PALETTE[k % len(PALETTE)]
            ls = "--" if label.startswith("shaped") else "-"
            _band(axes[0, j], x, token_similarity(V), c, label, ls)
            _band(axes[1, j], x, -ds.log_consensus.values, c, label, ls)
        axes[0, j].set_title(f"width n = {n}")
        axes[1, j].set_yscale("log")
        axes[1, j].set_xlabel("depth (layers)")
    axes[0, 0].set_ylabel("token similarity ρ̄ (mean off-diagonal ρ)")
    axes[1, 0].set_ylabel(r"$-\log\,\mu(X)/\|X\|_F$ (distance to rank one; log scale)")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"Rank collapse at initialisation: m = {m} tokens, depth {depth}, V0 = I "
                 f"(median and 10–90 % band over paths)")
    return fig


MASKS = [("complete", {}), ("causal", {}), ("sliding w = 2", {"mask": "sliding", "window": 2}),
         ("causal-sliding w = 2", {"mask": "causal-sliding", "window": 2}),
         ("sparse k = 2", {"mask": "sparse", "sparse_k": 2})]


def mask_models():
    """(label, layernorm, model) of the masks/LayerNorm figure (attention-only stacks)."""
    out = []
    for label, kw in MASKS:
        kw = dict(kw) if kw else ({"mask": label} if label != "complete" else {})
        for ln in (False, True):
            out.append((label, ln, AttentionOnly(layernorm=ln, **kw)))
    return out


def plot_masks_layernorm(runs, m, n, axes=None):
    """runs: [(label, layernorm, dataset)]; panels: without / with LayerNorm."""
    fig, axes = _figure(axes, 1, 2, figsize=(11, 4.4), sharey=True, constrained_layout=True)
    labels = list(dict.fromkeys(label for label, _, _ in runs))
    for label, ln, ds in runs:
        ax = axes[0, int(ln)]
        c = PALETTE[labels.index(label) % len(PALETTE)]
        _band(ax, ds.depth.values, -ds.log_consensus.values, c, label)
    for j, title in enumerate(("attention only", "attention + LayerNorm after each layer")):
        axes[0, j].set_yscale("log")
        axes[0, j].set_xlabel("depth (layers)")
        axes[0, j].set_title(title)
    axes[0, 0].set_ylabel(r"$-\log\,\mu(X)/\|X\|_F$ (log scale)")
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"Masks and LayerNorm in rank collapse (Wu et al.): m = {m}, n = {n}, V0 = I")
    return fig


def similarity_bound(depth):
    """B_d of docs/theory.md §2.4b for d = 0 … depth."""
    def kappa(r):
        return (math.sqrt(1 - r * r) + (math.pi - math.acos(r)) * r) / math.pi
    out = [0.0]
    for _ in range(depth):
        out.append((out[-1] + kappa(out[-1])) / 2)
    return np.array(out)


def plot_similarity_removal(runs, m, n, ax=None):
    """runs: [(θ, dataset)]."""
    fig, axes = _figure(ax, figsize=(6.4, 4.4), constrained_layout=True)
    ax = axes[0, 0]
    for k, (theta, ds) in enumerate(runs):
        _band(ax, ds.depth.values, token_similarity(ds.V.values), PALETTE[k], f"θ = {theta:g}")
    d = int(runs[0][1].depth.values[-1])
    ax.plot(np.arange(d + 1), similarity_bound(d), color="k", ls="--", lw=1,
            label="bound for θ = 1 (§2.4b)")
    ax.set_xlabel("depth (layers)")
    ax.set_ylabel("token similarity ρ̄")
    ax.set_ylim(-0.05, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Post-LN with similarity removal (Zhang & Yu): m = {m}, n = {n}")
    return fig


CAPTIONS = {
    "rank_collapse": "Token similarity (top) and −log μ(X)/‖X‖_F, the distance to rank one "
                     "(bottom, log scale), vs depth for unshaped Transformers (post-LN, pre-LN, "
                     "attention-only, vanilla with E-SPA/U-SPA — their MLP shaped to keep the "
                     "kernel schedule, docs/theory.md §2.4g — and Value-SkipInit) and shaped "
                     "attention/block, literal finite networks (reduced for the shaped ones, "
                     "same law) from orthogonal tokens. Median and 10–90 % band over paths. "
                     "μ is the dataset's log_consensus: carried without a round-off floor for "
                     "the attention-only and shaped-attention stacks (docs/theory.md §2.4c), "
                     "from V for the others, which stay far above V's floor. Attention-only "
                     "collapses doubly exponentially: log μ triples per layer (asymptotically; "
                     "tests/test_collapse_rate.py).",
    "masks_layernorm": "Attention-only stacks (standard softmax attention, no skip): the "
                       "distance to rank one as −log μ(X)/‖X‖_F vs depth (log scale) for each "
                       "attention mask, "
                       "without (left) and with (right) LayerNorm after each layer, on the "
                       "carried log μ/‖X‖ (no round-off floor, docs/theory.md §2.4c). The "
                       "complete mask collapses doubly exponentially (log μ triples per layer), "
                       "with or without LayerNorm; a mask makes the collapse exponential, at the "
                       "asymptotic rate log|λ₂(C)| of its row-normalised matrix C "
                       "(docs/theory.md §2.4d; tests/test_collapse_rate.py), reached only after "
                       "a transient. LayerNorm stacks start from Haar-random frames (§2.4f); with "
                       "chosen value matrices LayerNorm does prevent collapse (figure "
                       "ln_equilibria). Median and 10–90 % band.",
    "similarity_removal": "Post-LN blocks: token similarity vs depth with the mean-token "
                          "component of the attention output removed by a fraction θ. The dashed "
                          "line is the width-first bound for θ = 1 (docs/theory.md §2.4b).",
}


CAPTIONS.update(RATE_CAPTIONS)
#: figures drawn by their own modules (name → module.draw function), captions from their data
EXTRA = {"espa_kernel": "espa.draw_espa_kernel",
         "ln_equilibria": "ln_equilibria.draw_ln_equilibria"}
FIGURES = tuple(CAPTIONS) + tuple(EXTRA)


def draw_collapse_figure(name, size, seed, save):
    """Compute the runs of figure ``name`` (one of :data:`FIGURES`) and hand the Figure to
    ``save(fig, stem, caption)``."""
    if name in EXTRA:
        import importlib

        mod, fn = EXTRA[name].rsplit(".", 1)
        return getattr(importlib.import_module(f"compare.figures.{mod}"), fn)(size, seed, save)
    cfg = SIZES[size]
    m, depth, paths, widths = cfg["m"], cfg["depth"], cfg["paths"], cfg["widths"]
    V0 = np.eye(m)
    kw = dict(depth=depth, n_paths=paths, save_every=1, progress=False)
    sizes = f" Sizes: m = {m}, depth {depth}, {paths} paths per curve; seed {seed}."
    if name == "rank_collapse":
        runs = {n: [(label, sample(model, V0, width=n, seed=seed + k, **kw))
                    for k, (label, model) in enumerate(rank_collapse_models())] for n in widths}
        fig = plot_rank_collapse(runs, m, depth)
    elif name == "masks_layernorm":
        n = widths[-1]
        runs = [(label, ln, sample(model, V0, width=n, seed=seed + 10, **kw))
                for label, ln, model in mask_models()]
        fig = plot_masks_layernorm(runs, m, n)
        rates = [f"{label} {mask_asymptotic_rate(json.loads(ds.attrs['mask_matrix'])):.3g}"
                 for label, ln, ds in runs if not ln and label != "complete"]
        sizes = (f" Asymptotic rates log|λ₂(C)| per layer at m = {m}: " + ", ".join(rates)
                 + "." + sizes)
    elif name == "similarity_removal":
        n = widths[-1]
        runs = [(th, sample(PostLN(similarity_removal=th), V0, width=n, seed=seed + 20, **kw))
                for th in (0.0, 0.5, 1.0)]
        fig = plot_similarity_removal(runs, m, n)
    elif name in RATE_CAPTIONS:
        fig, caption = draw_rate_figure(name, cfg, seed)
        save(fig, name, caption + f" Seed {seed}.")
        return
    else:
        raise ValueError(f"unknown collapse figure {name!r}")
    save(fig, name, CAPTIONS[name] + sizes)


def make_collapse_figures(out_dir, size="quick", seed=0, only=None, log=print):
    """Write each figure as PNG and PDF into ``out_dir``; returns the written paths."""
    import matplotlib.pyplot as plt

    written = []

    def save(fig, stem, caption):
        for ext in ("png", "pdf"):
            path = os.path.join(out_dir, f"{stem}.{ext}")
            fig.savefig(path, dpi=130)
            written.append(path)
        plt.close(fig)
        log(f"  {stem}: written")

    for name in only or FIGURES:
        draw_collapse_figure(name, size, seed, save)
    return written
