"""Figures of the carried consensus distance and of collapse rates (docs/theory.md §2.4c–d).

* ``doubly_exponential``: log μ(X)/‖X‖_F of complete-mask attention-only stacks, depth by
  depth, against the depths where float64 loses it (from V, from X), and log(−log μ) against
  depth with the slope log 3 of the tripling;
* ``collapse_rate_diameter``: the asymptotic per-layer rate log|λ₂(C)| of masked attention
  against the mask graph's diameter (sliding w, causal sliding w, sparse k; m = 4 … 32),
  fitted rates of finite stacks with 95 % intervals where the run reaches the asymptotic
  regime, and the rate bound of Wu et al.'s theorem.

Plot functions take optional axes and return the Figure; :func:`draw_rate_figure` computes
the runs of one figure and returns ``(fig, caption)``.
"""
import math

import numpy as np

from finite import sample
from finite.unshaped import AttentionOnly
from sde.masks import Mask

from ..collapse_rate import collapse_rate, mask_asymptotic_rate

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"]
#: log μ/‖X‖ below which float64 has no digit left: from V (μ² cancels against tr V), from X
FLOOR_FROM_V = 0.5 * math.log(np.finfo(float).eps)
FLOOR_FROM_X = math.log(np.finfo(float).eps)
TOKENS = (4, 8, 16, 32)
FAMILIES = (("sliding", "window", (1, 2, 4)), ("causal-sliding", "window", (1, 2, 4)),
            ("sparse", "sparse_k", (1, 2, 3)))


def _figure(ax, ncols, **kw):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, np.atleast_1d(ax)
    fig, axes = plt.subplots(1, ncols, squeeze=False, **kw)
    return fig, axes[0]


def plot_doubly_exponential(runs, axes=None):
    """runs: [(label, dataset)] of complete-mask stacks; left: log μ/‖X‖ at depths ≤ 5 with
    float64's floors, right: log(−log μ/‖X‖) against depth with slope log 3."""
    fig, axes = _figure(axes, 2, figsize=(11.5, 4.4), constrained_layout=True)
    for k, (label, ds) in enumerate(runs):
        c = PALETTE[k % len(PALETTE)]
        d = ds.depth.values
        lc = ds.log_consensus.values
        q = np.nanquantile(lc, [0.1, 0.5, 0.9], axis=0)
        sel = d <= 5
        axes[0].fill_between(d[sel], q[0, sel], q[2, sel], color=c, alpha=0.15, lw=0)
        axes[0].plot(d[sel], q[1, sel], "o-", color=c, label=label)
        with np.errstate(invalid="ignore", divide="ignore"):
            ll = np.log(-lc)
        ql = np.nanquantile(ll, [0.1, 0.5, 0.9], axis=0)
        axes[1].fill_between(d, ql[0], ql[2], color=c, alpha=0.15, lw=0)
        axes[1].plot(d, ql[1], "-", color=c, label=label)
    for y, txt in ((FLOOR_FROM_V, "from V: no digit left below"),
                   (FLOOR_FROM_X, "from X: no digit left below")):
        axes[0].axhline(y, color="0.4", ls=":", lw=1)
        axes[0].text(0.05, y + 2, txt, fontsize=8, color="0.3")
    axes[0].set_xlabel("depth (layers)")
    axes[0].set_ylabel(r"$\log\,\mu(X)/\|X\|_F$ (median, 10–90 % band)")
    axes[0].set_title("the carried value, far below float64's reach")
    axes[0].legend(fontsize=8, loc="lower left")
    d_end = max(int(ds.depth.values[-1]) for _, ds in runs)
    x = np.arange(2, d_end + 1)
    ref = [np.nanmedian(np.log(-ds.log_consensus.values[:, 2])) for _, ds in runs]
    axes[1].plot(x, np.median(ref) + math.log(3) * (x - 2), "k--", lw=1,
                 label="slope log 3 (log μ triples per layer)")
    axes[1].set_xlabel("depth (layers)")
    axes[1].set_ylabel(r"$\log(-\log\,\mu(X)/\|X\|_F)$")
    axes[1].set_title("doubly exponential: a straight line here")
    axes[1].legend(fontsize=8, loc="upper left")
    return fig


def graph_distances(M):
    """(diameter, radius): the largest finite directed distance between tokens of the mask
    graph (a → b when a attends to b), and the smallest r such that some token is reached
    from every token within r steps (None if there is no such token)."""
    M = np.asarray(M) != 0
    m = len(M)
    D = np.full((m, m), np.inf)
    reach = np.eye(m, dtype=bool)
    step = np.eye(m, dtype=bool)
    D[reach] = 0
    for r in range(1, m):
        step = (step.astype(int) @ M.astype(int)) > 0
        new = step & ~reach
        D[new] = r
        reach |= step
    finite = D[np.isfinite(D)]
    cols = np.where(np.isfinite(D).all(axis=0))[0]
    radius = int(D[:, cols].max(axis=0).min()) if len(cols) else None
    return int(finite.max()), radius


def lambda2_multiplicity(M):
    """How many eigenvalues of the row-normalised mask share |λ₂| (within 1e-6): a repeated
    λ₂ with a Jordan block makes ``C^d ~ d^{k−1} λ₂^d``, so the rate approaches log|λ₂| only
    like (k − 1) log d / d."""
    M = np.asarray(M, dtype=float)
    ev = np.linalg.eigvals(M / M.sum(axis=1, keepdims=True))
    ev = np.delete(ev, np.argmin(np.abs(ev - 1.0)))
    a = np.abs(ev)
    return int(np.sum(np.abs(a - a.max()) < 1e-6))


def wu_bound_rate(M):
    """The per-layer rate bound ``log(1 − ε^r)/r`` of Wu et al.'s theorem for mask M
    (docs/theory.md §2.4d): r the radius of :func:`graph_distances`, ε the smallest attention
    weight on an allowed edge, here that of the collapsed state, 1/max_a k_a."""
    _, r = graph_distances(M)
    if r is None:
        return math.nan
    eps = 1.0 / np.asarray(M).sum(axis=1).max()
    return math.log1p(-eps ** r) / max(r, 1)


def rate_cases(tokens=TOKENS):
    """[(family, parameter, m, mask matrix)] of the rate figure (sparse graphs from seed 0)."""
    out = []
    for fam, arg, values in FAMILIES:
        for v in values:
            for m in tokens:
                if v >= m:
                    continue
                M = Mask(fam, **{arg: v}).matrix(m, 0)
                if graph_distances(M)[0] > 1:      # a complete graph collapses doubly
                    out.append((fam, v, m, M))     # exponentially: no rate
    return out


def plot_rate_diameter(rows, ax=None):
    """rows: dicts with family, param, m, diameter, theory, bound, and optionally fit / low /
    high (a finite run's rate)."""
    fig, axes = _figure(ax, 1, figsize=(7.6, 5.2), constrained_layout=True)
    ax = axes[0]
    markers = {4: "o", 8: "s", 16: "^", 32: "D"}
    fams = [f for f, _, _ in FAMILIES]
    for r in rows:
        c = PALETTE[fams.index(r["family"])]
        if np.isfinite(r["theory"]) and r["theory"] < 0:
            ax.plot(r["diameter"], -r["theory"], markers[r["m"]], color=c, ms=6)
        if np.isfinite(r["bound"]):
            ax.plot(r["diameter"], -r["bound"], markers[r["m"]], color=c, ms=5, mfc="none",
                    alpha=0.6)
        if "fit" in r:
            ax.errorbar(r["diameter"] * 1.06, -r["fit"], yerr=[[r["high"] - r["fit"]],
                                                                [r["fit"] - r["low"]]],
                        fmt="x", color="0.6" if r["repeated"] else "k", ms=5, capsize=2,
                        lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-11, 3)
    ax.set_xticks([2, 3, 4, 6, 8, 12, 16, 24, 32])
    ax.set_xticks([], minor=True)
    ax.set_xticklabels(["2", "3", "4", "6", "8", "12", "16", "24", "32"])
    ax.set_xlabel("diameter of the mask graph (largest directed distance between tokens)")
    ax.set_ylabel("collapse rate per layer, −d log μ/d depth")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=PALETTE[i], marker="o", ls="", label=f)
               for i, f in enumerate(fams)]
    handles += [Line2D([], [], color="0.3", marker=markers[m], ls="", label=f"m = {m}")
                for m in markers]
    handles += [Line2D([], [], color="0.3", marker="o", mfc="none", ls="",
                       label="Wu et al.'s bound (radius r, ε = 1/max k)"),
                Line2D([], [], color="k", marker="x", ls="-",
                       label="finite stacks: fitted rate, 95 % CI"),
                Line2D([], [], color="0.6", marker="x", ls="-",
                       label="the same, λ₂ repeated (approached like 1/depth)")]
    ax.legend(handles=handles, fontsize=7, loc="lower left", ncol=2)
    ax.set_title("Asymptotic rate of rank collapse: log|λ₂(C)| (filled) against the "
                 "mask's diameter", fontsize=10)
    return fig


def rate_rows(size_cfg, seed, tokens=TOKENS, fit_tokens=(4, 8), max_depth=400):
    """The rows of :func:`plot_rate_diameter`; finite fits for m in ``fit_tokens`` where the
    asymptotic regime (log μ below −8 at the window's start) is reached by ``max_depth``."""
    rows = []
    n, paths = size_cfg["widths"][-1], size_cfg["paths"]
    for k, (fam, v, m, M) in enumerate(rate_cases(tokens)):
        diam, _ = graph_distances(M)
        row = dict(family=fam, param=v, m=m, diameter=diam, theory=mask_asymptotic_rate(M),
                   bound=wu_bound_rate(M), repeated=lambda2_multiplicity(M) > 1)
        th = row["theory"]
        if m in fit_tokens and th < -1e-3:
            depth = int(2 * (8.0 / -th) + 20)
            if depth <= max_depth:
                kw = {"mask": fam, ("window" if fam != "sparse" else "sparse_k"): v}
                ds = sample(AttentionOnly(**kw), np.eye(m), width=n, depth=depth,
                            n_paths=paths, seed=0, save_every=1, progress=False)
                fit = collapse_rate(ds)
                row.update(fit=fit["rate"], low=fit["low"], high=fit["high"], depth=depth)
        rows.append(row)
    return rows


RATE_CAPTIONS = {
    "doubly_exponential": "Complete-mask attention-only stacks (no skip, standard softmax): "
                          "the consensus distance μ(X)/‖X‖_F carried without a round-off floor "
                          "(docs/theory.md §2.4c). Left: log μ/‖X‖ at depths 0–5 with the "
                          "levels below which float64 has no digit left, computed from V "
                          "(log ≈ −18) or from X (log ≈ −36). Right: log(−log μ/‖X‖) against "
                          "depth with slope log 3: log μ triples per layer (tested in "
                          "tests/test_collapse_rate.py: the rate over depths 10–16 is log 3 "
                          "within 1e-4). Median and 10–90 % band over paths.",
    "collapse_rate_diameter": "Per-layer rate of rank collapse of masked attention-only "
                              "stacks against the diameter of the mask graph. Filled: the "
                              "asymptotic rate log|λ₂(C)|, C the row-normalised mask "
                              "(docs/theory.md §2.4d); black crosses: rates of finite stacks "
                              "fitted over the second half of runs long enough to be "
                              "asymptotic, with 95 % intervals (tests/test_collapse_rate.py "
                              "checks the interval contains log|λ₂(C)| for sliding w = 1 at "
                              "m = 4 and causal at m = 8; grey: λ₂ is repeated, e.g. causal "
                              "sliding w = 1, whose C is a Jordan block at 1/2, so the fitted "
                              "rate still sits above log|λ₂| at these depths); open: the "
                              "rate bound log(1 − ε^r)/r "
                              "of Wu et al.'s theorem with the graph's radius r and ε = "
                              "1/max k_a, the attention weight of the collapsed state.",
}


def draw_rate_figure(name, size_cfg, seed):
    """(Figure, caption) of ``name`` in :data:`RATE_CAPTIONS`."""
    n, paths = size_cfg["widths"][-1], size_cfg["paths"]
    if name == "doubly_exponential":
        depth = min(size_cfg["depth"], 16)
        runs = []
        for k, m in enumerate((4, 8, 16)):
            if n // 1 < m:
                continue
            runs.append((f"m = {m}", sample(AttentionOnly(), np.eye(m), width=n, depth=depth,
                                            n_paths=paths, seed=seed + 40 + k, save_every=1,
                                            progress=False)))
        runs.append(("m = 8, LayerNorm after each layer",
                     sample(AttentionOnly(layernorm=True), np.eye(8), width=n, depth=depth,
                            n_paths=paths, seed=seed + 44, save_every=1, progress=False)))
        fig = plot_doubly_exponential(runs)
        fig.suptitle(f"Doubly exponential collapse of pure attention (complete mask, n = {n}, "
                     f"V0 = I, {paths} paths)")
        return fig, RATE_CAPTIONS[name] + f" Sizes: n = {n}, depth {depth}, {paths} paths."
    if name == "collapse_rate_diameter":
        fit_tokens = (4,) if size_cfg["depth"] < 10 else (4, 8)
        rows = rate_rows(size_cfg, seed, fit_tokens=fit_tokens)
        fig = plot_rate_diameter(rows)
        fits = [r for r in rows if "fit" in r]
        return fig, (RATE_CAPTIONS[name] + f" Finite runs: n = {n}, {paths} paths, "
                     f"m ∈ {{{', '.join(map(str, fit_tokens))}}}, depth 2·8/|rate| + 20 "
                     f"(≤ 400); {len(fits)} of {len(rows)} cases fitted.")
    raise ValueError(f"unknown rate figure {name!r}")
