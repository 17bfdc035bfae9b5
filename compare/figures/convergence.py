"""Figures of a weak-error convergence study (:mod:`compare.convergence`).

:func:`plot_weak_errors` draws |e(n)| against n on log-log axes for one functional, one
colour per time: filled markers where the 95 % interval excludes 0, hollow ones where it does
not (then the bar runs from the axis floor to the interval's far end), the fitted
``|C| n^-r`` over the widths with the rate and its interval in the legend (not drawn when
the fit's χ² p-value is below :data:`MIN_FIT_P`: one power does not describe the points),
and, where
docs/theory.md §6.8 predicts a rate, that slope as a grey dashed line through the fit at the
largest width (:func:`compare.convergence.predicted_rate`); none where it predicts nothing.
For ``exp:a`` of the Li–Nica–Roy shaped ReLU MLP the exact weak error is known
(:mod:`compare.lnr_diagonal`) and is drawn instead of a slope: a dotted line (the time's colour) through
the exact e(n) at each width and time (it bends from local slope ≈ 0.8 at n = 8 to 1).
"""
import math

import matplotlib.pyplot as plt
import numpy as np

from ..convergence import MAX_RATE_SE
from ..weak_error import Z95
from .style import OKABE_ITO

#: a fit whose χ² goodness-of-fit p-value is below this is not drawn: one power does not
#: describe the points (e.g. a survival probability that is flat, then falls)
MIN_FIT_P = 1e-3
_TIME_COLORS = (OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["green"],
                OKABE_ITO["purple"], OKABE_ITO["orange"], OKABE_ITO["sky"])
_NAMES = {"corr": r"$\rho_{{{a}{b}}}$", "exp": r"$\exp(-V_{{{a}{a}}})$"}


def functional_label(f):
    """A functional name in words / math for titles."""
    kind, _, rest = f.partition(":")
    if kind == "corr":
        a, b = rest.split(",")
        return rf"$\rho_{{{a}{b}}}$ (0 if censored)"
    if kind == "exp":
        return rf"$\exp(-V_{{{rest}{rest}}})$ (0 if censored)"
    if kind == "alive":
        return "P(path counted)"
    if kind == "exceed":
        return rf"P($\sup_{{s\leq t}}\,\max_a V_{{aa}}(s) > {rest}$)"
    if kind == "below":
        stat, _, q = rest.rpartition(":")
        name = {"mineig": r"$\lambda_{\min}$", "effrank": "effective rank"}.get(stat, stat)
        return f"P({name} ≤ {q})"
    return f


def _exact_exp_errors(model, functional, result, time):
    """The exact e(n) of ``exp:a`` at the study's widths for a Li–Nica–Roy ReLU MLP, else
    None (docs/theory.md §6.8)."""
    from sde.models import ShapedMLP

    kind, _, a = functional.partition(":")
    if kind != "exp" or not isinstance(model, ShapedMLP) or model.activation != "relu":
        return None
    from ..lnr_diagonal import weak_error_exp

    v0 = float(np.asarray(result.attrs["V0"])[int(a), int(a)])
    return weak_error_exp(model.c_plus, model.c_minus, result.attrs["widths"], time, v0)


def plot_weak_errors(result, functional, ax=None, model=None):
    """|e(n)| vs n for ``functional`` at every time of ``result``; returns the Figure."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.2), constrained_layout=True)
    rows = [r for r in result.rows if r["functional"] == functional]
    floor = math.inf
    for r in rows:
        e = np.array(r["errors"], dtype=float)
        floor = min(floor, np.nanmin(np.abs(e[:, 0][e[:, 0] != 0]), initial=math.inf),
                    np.nanmin(np.where(e[:, 1] * e[:, 2] > 0, np.abs(e[:, 1:]).min(axis=1),
                                       math.inf)))
    floor = floor / 3 if math.isfinite(floor) else 1e-4
    exact_drawn = slope_drawn = False
    for k, r in enumerate(rows):
        col = _TIME_COLORS[k % len(_TIME_COLORS)]
        exact = _exact_exp_errors(model, functional, result, r["time"])
        if exact is not None:
            ax.plot(r["widths"], np.abs(exact), ":", color=col, lw=1.6, zorder=5)
            exact_drawn = True
        n0 = np.asarray(r["widths"], dtype=float)
        n = n0 * 1.04 ** (k - (len(rows) - 1) / 2)  # side by side, not on top of each other
        e = np.array(r["errors"], dtype=float)
        est, lo, hi = e[:, 0], e[:, 1], e[:, 2]
        resolved = lo * hi > 0
        mag = np.maximum(np.abs(est), floor)
        near = np.where(resolved, np.minimum(np.abs(lo), np.abs(hi)), floor)
        far = np.maximum(np.abs(lo), np.abs(hi))
        ax.vlines(n, near, far, color=col, lw=1.2, alpha=0.8)
        ax.plot(n[resolved], mag[resolved], "o", color=col, ms=5)
        ax.plot(n[~resolved], mag[~resolved], "o", mfc="white", mec=col, ms=5)
        label = f"t = {r['time']:g}"
        resolved_rate = (math.isfinite(r["rate"]) and not r.get("note")
                         and (r["rate_ci"][1] - r["rate"]) / Z95 <= MAX_RATE_SE)
        fit_p = r.get("fit_p_value", float("nan"))
        if resolved_rate and fit_p < MIN_FIT_P:
            label += f": no single power fits (χ² p = {fit_p:.1g}); no line"
        elif resolved_rate:
            rlo, rhi = r["rate_ci"]
            label += f": rate {r['rate']:.2f} [{rlo:.2f}, {rhi:.2f}]"
            xs = np.geomspace(n0.min(), n0.max(), 50)
            ax.plot(xs, abs(r["amplitude"]) * xs ** -r["rate"], "-", color=col, lw=1.3)
            if model is not None and exact is None:
                from ..convergence import predicted_rate

                pr, _ = predicted_rate(model, functional)
                if pr is not None:
                    y1 = abs(r["amplitude"]) * n0.max() ** -r["rate"]
                    ax.plot(xs, y1 * (xs / n0.max()) ** -pr, "--", color="0.5", lw=1)
                    slope_drawn = True
        elif math.isfinite(r["rate"]):
            label += f": rate unresolved ({r['rate']:.2g} ± {r['rate_ci'][1] - r['rate']:.2g})"
        else:
            label += ": no rate (no width resolves e ≠ 0)"
        ax.plot([], [], "o-", color=col, label=label)
    if exact_drawn:
        ax.plot([], [], ":", color="k", lw=1.3, label="exact e(n) (theory §6.8; slope → 1)")
    elif slope_drawn:
        from ..convergence import predicted_rate

        pr, _ = predicted_rate(model, functional)
        ax.plot([], [], "--", color="0.5", label=f"predicted slope n^-{pr:g} (theory §6.8)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width n")
    ax.set_ylabel("|weak error| |E f(finite) − E f(SDE)|")
    ax.set_title(functional_label(functional), fontsize=10)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)
    ax.grid(True, which="both", alpha=0.25)
    return ax.figure


def convergence_figure(result, functionals=None, model=None):
    """One panel per functional (:func:`plot_weak_errors`) with the settings as title."""
    from sde.errors import CovsdeInputError
    from sde.models import model_from_params

    a = result.attrs
    if model is None:
        try:
            model = model_from_params(a)
        except (CovsdeInputError, KeyError, TypeError, ValueError):  # drawn without theory
            model = None
    functionals = functionals or a["functionals"]
    k = len(functionals)
    cols = min(k, 3)
    rws = math.ceil(k / cols)
    fig, axes = plt.subplots(rws, cols, figsize=(5.0 * cols, 4.3 * rws + 0.6),
                             constrained_layout=True, squeeze=False)
    for ax, f in zip(axes.flat, functionals):
        plot_weak_errors(result, f, ax=ax, model=model)
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    fig.suptitle(f"Weak error of finite networks vs SDE: arch={a['arch']}, m = {a['m']}; "
                 f"finite paths per width {_paths(a['n_paths'])}; SDE {a['sde_paths']} paths, "
                 f"{a['method']}, dt = {a['dt']:g}; seed {a['seed']}\n"
                 f"bars: 95 % intervals; hollow: interval contains 0 (bar from the axis "
                 f"floor); lines: GLS fit C n^-r", fontsize=9)
    return fig


def _paths(p):
    return str(p[0]) if len(set(p)) == 1 else ", ".join(str(x) for x in p)

