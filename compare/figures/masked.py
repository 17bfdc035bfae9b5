"""Causal vs bidirectional shaped attention: the law of ρ_{0,j} and V_jj against token position j,
and the SDE's blow-up probability, converged in dt, over (γ, τ0) per mask.

Drawn by ``covsde figures --only masked_positions`` / ``--only masked_stability``
(:class:`compare.figures.gallery.Gallery`), which saves the datasets under ``DIR/data``:
the SDE and the reduced finite network of the same shaped block (same γ, τ0) with the
complete and the causal mask (docs/theory.md §3.5), and at each d/n ∈ {0.25, 1} the median
and 10–90 % band of ρ_{0,j} and of V_jj against j (SDE: lines and bands; finite network:
markers with bars); and the maps over (γ, τ0) of the shaped-attention SDE's blow-up
probability converged in dt (SPD scheme, coupled runs: :mod:`sde.blowup`) with the complete,
sliding (w = 1) and causal masks, with their table (CSV). Plot functions take an
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


def _time_index(ds, t):
    return int(np.argmin(np.abs(ds.time.values - t)))


def censored_fraction(ds, t, bound):
    """The fraction of paths of ``ds`` not counted at the saved time nearest t under the
    common censoring rule (:func:`compare.distances.usable_paths` with ``bound``)."""
    from ..distances import usable_paths

    return float(1.0 - usable_paths(ds, bound)[:, _time_index(ds, t)].mean())


def position_quantiles(ds, t, stat, bound):
    """Quantiles (3, m) at the saved time nearest t of ``stat`` for every token j, under the
    common censoring rule (a path counts at t if V is finite and max|V_ab| <= ``bound`` at
    every saved time up to t: :func:`compare.distances.usable_paths`, the rule of
    ``covsde compare``, applied to the SDE and the finite network alike).

    ``"diag"`` (V_jj): quantiles of the whole law, a censored path counting as V_jj = +inf
    (it passed the bound); a quantile level above the counted fraction is NaN (off the top).
    ``"rho0"`` (ρ_{0,j}): quantiles over the counted paths (a censored path has no
    correlation to count). Quantiles are sample values (``inverted_cdf``), never
    interpolated towards +inf.
    """
    from ..distances import usable_paths

    i = _time_index(ds, t)
    ok = usable_paths(ds, bound)[:, i]
    V = ds.V.values[:, i]
    if stat == "rho0":
        V = V[ok]
        d = np.diagonal(V, axis1=1, axis2=2)
        x = V[:, 0, :] / np.sqrt(d[:, :1] * d)
    else:
        x = np.where(ok[:, None], np.diagonal(V, axis1=1, axis2=2), np.inf)
    q = np.quantile(x, QUANTILES, axis=0, method="inverted_cdf")
    return np.where(np.isfinite(q), q, np.nan)


def plot_positions(runs, t, stat, ax=None, bound=None):
    """One panel: quantiles of ``stat`` against token position at time t for every run
    (:func:`position_quantiles`; ``bound``: the censoring bound, by default the smallest
    ``bound`` attr of the runs, else 1e4).

    runs: {(mask, source): dataset}, source "SDE" (line + band) or "finite" (markers + bars).
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    from ..distances import censoring_bound

    bound = censoring_bound(*runs.values()) if bound is None else bound
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    fig = ax.figure
    censored = {}
    for (mask, source), ds in runs.items():
        q = position_quantiles(ds, t, stat, bound)
        j = np.arange(q.shape[1])
        col = MASK_COLORS.get(mask, "gray")
        label = f"{mask} {source}"
        censored.setdefault(source, {})[mask] = f"{100 * censored_fraction(ds, t, bound):.1f} %"
        if source == "SDE":
            ax.fill_between(j, q[0], q[2], color=col, alpha=0.18)
            ax.plot(j, q[1], color=col, lw=2, label=label)
        else:
            jj = j + (0.12 if mask == "causal" else -0.12)
            ax.errorbar(jj, q[1], yerr=[q[1] - q[0], q[2] - q[1]], fmt="o", ms=4, color=col,
                        mfc="white", capsize=2, lw=1, label=label)
    ax.set_xlabel("token position j")
    ax.set_ylabel(r"$\rho_{0,j}$" if stat == "rho0" else r"$V_{jj}$")
    masks = list(dict.fromkeys(mask for v in censored.values() for mask in v))
    ax.set_title(f"d/n = {t:g}\ncensored: " + ", ".join(
        f"{source} {' / '.join(v.get(mask, '–') for mask in masks)}"
        for source, v in censored.items()) + f" ({' / '.join(masks)})", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_masked_positions(runs, times=(0.25, 1.0), title=None):
    """The 2 × len(times) grid: rows ρ_{0,j} and V_jj, columns d/n; panel titles give each
    run's censored fraction at that d/n; one legend below the panels. Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(times), figsize=(4.8 * len(times), 7.4),
                             constrained_layout=True, squeeze=False)
    for c, t in enumerate(times):
        plot_positions(runs, t, "rho0", axes[0, c])
        plot_positions(runs, t, "diag", axes[1, c])
        axes[1, c].set_yscale("log")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def stability_rows(mask_kw, gammas, tau0s, m=8, rho0=0.2, t_end=1.0, dt0=0.05, n_paths=1000,
                   seed=0, max_halvings=5, progress=None):
    """The shaped-attention SDE's blow-up probability ``P(τ ≤ t_end)`` over the (γ, τ0) grid,
    converged in dt: one dict per cell (row-major in γ, then τ0).

    Each cell is :func:`sde.blowup.blowup_probability` with the SPD scheme (it never leaves
    the PD cone, so every dead path blew up) on coupled runs, dt halved from ``dt0`` until
    the default rule (:func:`sde.blowup.rule_phrase`) holds; ``status``
    says whether it converged (docs/theory.md §4.4). Keys: gamma, tau0, T, method, dt0, dt,
    converged, status, n_paths, n_dead, probability, ci95_low, ci95_high,
    difference_ci95_low, difference_ci95_high (NaN before a halving), sequence ("P@dt"
    over the step sizes run).
    """
    import sde
    from sde.blowup import blowup_probability

    V0 = sde.equicorrelated(m, rho0)
    rows = []
    for g in gammas:
        for t in tau0s:
            r = blowup_probability(sde.ShapedAttention(g, t, **mask_kw), V0, t_end=t_end,
                                   dt0=dt0, n_paths=n_paths, seed=seed, method="spd",
                                   max_halvings=max_halvings, progress=progress)
            last = r.sequence[-1]
            dlo, dhi = last.get("difference_ci", (np.nan, np.nan))
            rows.append(dict(gamma=g, tau0=t, T=t_end, method="spd", dt0=dt0, dt=r.dt,
                             converged=bool(r.converged), status=r.status, n_paths=n_paths,
                             n_dead=int(last["n_dead"]), probability=r.probability,
                             ci95_low=r.ci_low, ci95_high=r.ci_high,
                             difference_ci95_low=float(dlo), difference_ci95_high=float(dhi),
                             sequence=" ".join(f"{q['probability']:.4g}@{q['dt']:g}"
                                               for q in r.sequence)))
    return rows


def stability_dataset(rows):
    """One mask's rows of :func:`stability_rows` as the Dataset that
    :func:`compare.figures.sweep.plot_stability` draws (dims ``gamma`` × ``tau0``,
    ``blowup_*`` variables)."""
    import xarray as xr

    gammas = sorted({r["gamma"] for r in rows})
    tau0s = sorted({r["tau0"] for r in rows})
    names = {"probability": "blowup_probability", "ci95_low": "blowup_ci95_low",
             "ci95_high": "blowup_ci95_high", "dt": "blowup_dt",
             "converged": "blowup_converged",
             "difference_ci95_low": "blowup_difference_ci95_low",
             "difference_ci95_high": "blowup_difference_ci95_high"}
    data = {v: np.full((len(gammas), len(tau0s)), np.nan) for v in names.values()}
    for r in rows:
        i, j = gammas.index(r["gamma"]), tau0s.index(r["tau0"])
        for k, v in names.items():
            data[v][i, j] = float(r[k])
    return xr.Dataset({v: (("gamma", "tau0"), a) for v, a in data.items()},
                      coords={"gamma": gammas, "tau0": tau0s})


def plot_stability_maps(table, title=None):
    """One heat map per mask of the converged blow-up probability from a table of
    :func:`stability_rows` with a ``mask`` column (:meth:`Gallery.masked_stability_table`),
    on one colour scale; a cell the rule could not settle is grey and hatched
    (:func:`compare.figures.sweep.plot_stability`). Returns the Figure."""
    import matplotlib.pyplot as plt

    from .sweep import plot_stability

    labels = list(dict.fromkeys(table["mask"]))
    n_g, n_t = table["gamma"].nunique(), table["tau0"].nunique()
    fig, axes = plt.subplots(1, len(labels), figsize=((1.5 * n_t + 2.6) * len(labels),
                                                      1.0 * n_g + 2.4),
                             constrained_layout=True, squeeze=False)
    vmax = float(np.nanmax(table["ci95_high"])) if len(table) else 1.0
    for ax, label in zip(axes[0], labels):
        rows = table[table["mask"] == label].to_dict("records")
        plot_stability(stability_dataset(rows), ax=ax, title=f"mask: {label}",
                       colorbar_label="P(τ ≤ T) (%)", vmax=vmax)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
