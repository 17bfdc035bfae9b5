"""Does a comparison have power? The theory's SDE and a control SDE against the same network.

A finite network agreeing with its SDE means something only if the same comparison would
*disagree* with a wrong SDE. :func:`power_table` tests the finite sample against the theory
SDE and against each control SDE (a perturbed parameter, e.g. γ × 1.15), statistic by
statistic and time by time, with the two-sample Kolmogorov–Smirnov test of
:func:`compare.distances.distances` (same censoring rule, same KS). A comparison's rows form
one family: a row is *rejected* when its p-value is below ``alpha / k`` (Bonferroni over the
k rows of that comparison), so "the theory is not rejected" and "the control is rejected"
are both statements at family-wise level ``alpha``.
"""
import warnings

import pandas as pd

from .distances import distances

#: the columns of ``power.csv``.
POWER_COLUMNS = ("comparison", "statistic", "time", "ks", "p_value", "verdict")
DEFAULT_ALPHA = 0.01
THEORY = "theory"


def perturbed_gamma(model, factor=1.15):
    """The control model: ``model`` with γ × ``factor`` (γ must stay in (0, 1])."""
    return model.replace(gamma=model.gamma * factor)


def power_table(finite, references, stats, times, *, alpha=DEFAULT_ALPHA, seed=0, n_boot=40,
                theory_distances=None):
    """KS tests of ``finite`` against each reference SDE sample.

    finite : the finite-network dataset (sample A of every test).
    references : dict ``comparison name → SDE dataset``; the theory's under :data:`THEORY`,
        controls under their own names (e.g. ``"control: γ × 1.15"``).
    stats, times : as :func:`compare.distances.distances`.
    theory_distances : optional, the already computed distances frame of finite vs the
        theory SDE (its ``ks`` and ``ks_pvalue`` are used instead of recomputing).

    Returns a DataFrame with :data:`POWER_COLUMNS`; ``verdict`` is ``"rejected"`` when
    ``p_value < alpha / k`` (k rows in the comparison), else ``"not rejected"``. ``attrs``:
    ``alpha``, ``threshold`` (per comparison), ``rule``.
    """
    rows = []
    thresholds = {}
    for name, ds in references.items():
        if name == THEORY and theory_distances is not None:
            df = theory_distances
        else:
            with warnings.catch_warnings():  # few resamples: only KS and its p-value are used
                warnings.simplefilter("ignore")
                df = distances(finite, ds, stats=list(stats), times=list(times), seed=seed,
                               n_boot=n_boot, progress=False)
        k = len(df)
        thresholds[name] = alpha / k
        for r in df.itertuples():
            rows.append({"comparison": name, "statistic": r.stat, "time": float(r.time),
                         "ks": float(r.ks), "p_value": float(r.ks_pvalue),
                         "verdict": "rejected" if r.ks_pvalue < alpha / k else "not rejected"})
    out = pd.DataFrame(rows, columns=list(POWER_COLUMNS))
    out.attrs.update(alpha=alpha, threshold=thresholds,
                     rule=f"two-sample KS of the finite sample against each SDE sample; a row is "
                          f"rejected when p < {alpha:g}/k, k = the comparison's rows "
                          f"(Bonferroni: family-wise level {alpha:g} per comparison)")
    return out


def power_summary(table):
    """One sentence per comparison: how many rows were rejected, and the extreme p-value."""
    lines = []
    for name, g in table.groupby("comparison", sort=False):
        k = len(g)
        n_rej = int((g["verdict"] == "rejected").sum())
        thr = table.attrs["threshold"][name]
        if name == THEORY:
            verdict = ("not rejected" if n_rej == 0 else f"REJECTED in {n_rej} of {k} rows")
            lines.append(f"theory SDE vs finite network: {verdict} (smallest p = "
                         f"{g['p_value'].min():.2g}, threshold {thr:.2g} per row)")
        else:
            verdict = ("rejected in every row" if n_rej == k else
                       f"NOT rejected in {k - n_rej} of {k} rows: this comparison cannot tell")
            lines.append(f"{name} vs finite network: {verdict} (largest p = "
                         f"{g['p_value'].max():.2g}, threshold {thr:.2g} per row)")
    return lines


__all__ = ["POWER_COLUMNS", "DEFAULT_ALPHA", "THEORY", "perturbed_gamma", "power_table",
           "power_summary"]
