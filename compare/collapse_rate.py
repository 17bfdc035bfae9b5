"""Per-layer collapse rates over a window of depths, with an interval (docs/theory.md §2.4d).

A collapse quantity q(path, depth) is fitted per path by least squares, ``q ≈ a + r·depth``
over the saved depths of a window; the rate is the mean of the per-path slopes r, with a
Student-t interval over paths (paths are independent). Quantities (``stat``):

* ``log-consensus``: log μ(X)/‖X‖_F (the dataset's ``log_consensus``): r is the exponential
  rate of rank collapse (Wu et al.'s claim is about its asymptotic value);
* ``loglog-consensus``: log(−log μ/‖X‖): r = log of the factor by which log μ is multiplied
  per layer (log 3 for the doubly exponential collapse of a complete-mask stack);
* ``log-dissimilarity``: log(1 − ρ̄), ρ̄ the token similarity (Zhang & Yu's quantity; 1 − ρ̄
  from V is accurate to ~1e-15 absolute, so paths where it falls below 1e-12 are dropped).

Default window: the second half of the run, depths ``[⌈D/2⌉, D]`` (D the last saved depth):
rates are asymptotic claims, and the first layers are a transient. The result also holds the
slopes of the window's two halves and the z-score of their difference: a rate that is still
changing (|z| large) is not an exponential rate yet.

:func:`mask_asymptotic_rate` is the limit of the ``log-consensus`` rate for a pure-attention
stack with mask M: ``log |λ₂(C)|``, C the row-normalised mask (docs/theory.md §2.4d).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.stats

from sde.errors import CovsdeInputError

from .collapse import token_similarity

STATS = ("log-consensus", "loglog-consensus", "log-dissimilarity")
#: 1 − ρ̄ below this is round-off (log-dissimilarity drops the path from the fit)
DISSIMILARITY_FLOOR = 1e-12


def collapse_quantity(ds, stat="log-consensus"):
    """q (path, time) of ``stat`` for a finite dataset (see module doc)."""
    if stat not in STATS:
        raise CovsdeInputError(f"stat must be one of {', '.join(STATS)}, got {stat!r}", "stat")
    if stat == "log-dissimilarity":
        d = 1.0 - token_similarity(ds.V.values)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > DISSIMILARITY_FLOOR, np.log(d), np.nan)
    if "log_consensus" not in ds:
        raise CovsdeInputError("dataset has no log_consensus variable (a finite-network run "
                               "writes it)", "stat")
    lc = ds.log_consensus.values
    if stat == "loglog-consensus":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(lc < 0, np.log(-lc), np.nan)
    return lc


def default_window(depths):
    """``(⌈D/2⌉, D)`` for the saved depths' last value D."""
    D = int(np.max(depths))
    return (D + 1) // 2, D


def _slopes(q, x):
    """Least-squares slope per row of q (rows with a non-finite value: NaN)."""
    xc = x - x.mean()
    ok = np.isfinite(q).all(axis=1)
    out = np.full(q.shape[0], np.nan)
    qq = q[ok]
    out[ok] = ((qq - qq.mean(axis=1, keepdims=True)) @ xc) / (xc @ xc)
    return out


def _mean_ci(r, level):
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2:
        return dict(rate=float(r.mean()) if n else math.nan, low=math.nan, high=math.nan,
                    se=math.nan, n_paths=n)
    se = float(r.std(ddof=1) / math.sqrt(n))
    t = scipy.stats.t.ppf(0.5 + level / 2, n - 1)
    m = float(r.mean())
    return dict(rate=m, low=m - t * se, high=m + t * se, se=se, n_paths=n)


def fit_rate(q, depths, window=None, level=0.95):
    """The per-layer rate of q (path, time) over ``window`` = (d0, d1), inclusive depths.

    Returns a dict: rate, low, high (the ``level`` interval), se, n_paths (paths with q finite
    over the whole window), window, depths_used, level, rate_first_half, rate_second_half,
    change_z (their difference over its standard error; paired by path), note.
    """
    depths = np.asarray(depths)
    q = np.asarray(q, dtype=float)
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise CovsdeInputError(f"level must be in (0, 1), got {level!r}", "level")
    if window is None:
        window = default_window(depths)
    d0, d1 = (int(w) for w in window)
    if not 0 <= d0 < d1:
        raise CovsdeInputError(f"window must be two depths 0 <= d0 < d1, got {window!r}",
                               "window")
    sel = (depths >= d0) & (depths <= d1)
    if sel.sum() < 2:
        raise CovsdeInputError(f"window [{d0}, {d1}] holds {int(sel.sum())} saved depth(s) "
                               f"(saved: {depths.min()}..{depths.max()}): need at least 2",
                               "window")
    x = depths[sel].astype(float)
    qs = q[:, sel]
    out = _mean_ci(_slopes(qs, x), level)
    out.update(window=[d0, d1], depths_used=int(sel.sum()), level=level)
    k = len(x) // 2
    if k >= 2 and len(x) - k >= 2:
        r1, r2 = _slopes(qs[:, :k + 1], x[:k + 1]), _slopes(qs[:, k:], x[k:])
        diff = (r2 - r1)[np.isfinite(r2 - r1)]
        out["rate_first_half"] = float(np.nanmean(r1))
        out["rate_second_half"] = float(np.nanmean(r2))
        se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else math.nan
        out["change_z"] = float(diff.mean() / se) if se > 0 else math.nan
    else:
        out["rate_first_half"] = out["rate_second_half"] = out["change_z"] = math.nan
    z = out["change_z"]
    out["note"] = ("rate still changing across the window (|z| > 3): not yet asymptotic"
                   if math.isfinite(z) and abs(z) > 3 else "")
    return out


def collapse_rate(ds, stat="log-consensus", window=None, level=0.95):
    """:func:`fit_rate` of :func:`collapse_quantity` on a finite dataset (``depth`` coord)."""
    if "depth" not in ds.coords:
        raise CovsdeInputError("dataset has no depth coordinate (a finite-network run has one)")
    out = fit_rate(collapse_quantity(ds, stat), ds.depth.values, window, level)
    out["stat"] = stat
    return out


def mask_asymptotic_rate(M):
    """``log |λ₂(C)|``, C = M with rows divided by their sums, λ₂ the eigenvalue of largest
    modulus once one eigenvalue 1 (eigenvector 1) is removed: the limit of the per-layer rate
    of log μ/‖X‖ of a pure-attention stack with mask M (docs/theory.md §2.4d)."""
    M = np.asarray(M, dtype=float)
    C = M / M.sum(axis=1, keepdims=True)
    ev = np.linalg.eigvals(C)
    ev = np.delete(ev, np.argmin(np.abs(ev - 1.0)))
    return float(np.log(np.abs(ev).max()))
