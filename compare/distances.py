"""Distances between two datasets of the common schema (scipy.stats KS and W1).

Censoring rule (one, everywhere): at each time a statistic is taken over the paths
**alive at that time** (finite V); the dead fraction of each side is reported beside
every distance, with a warning flag where it exceeds 1 %.

Noise floor: the same distance between two independent samples of the same sizes drawn
from one source — here resampled (with replacement) from side ``b``'s alive values — as
the median over the bootstrap draws. A distance is informative only well above its floor.

A one-path dataset (an ODE run) enters as a point mass: its KS and W1 are those against
δ at the ODE value, so ``W1(finite, δ_ODE)`` can be read beside ``W1(finite, SDE)``.
"""
import warnings

import numpy as np
import pandas as pd
import scipy.stats

from sde.errors import CovsdeInputError

from .statistics import compute_stat, parse_stat

TIME_RTOL = 1e-9
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
DEAD_WARN = 0.01


def match_times(a, b, times=None):
    """Times present in both datasets (relative tolerance 1e-9).

    Returns ``(pairs, missing)``: pairs of (index in a, index in b, time), and the
    requested times (or a's times when ``times`` is None) that have no partner.
    """
    ta = a["time"].values
    tb = b["time"].values
    wanted = ta if times is None else np.asarray(times, dtype=float)
    pairs, missing = [], []
    for t in wanted:
        ia = _find(ta, t)
        ib = _find(tb, t)
        if ia is None or ib is None:
            missing.append(float(t))
        else:
            pairs.append((ia, ib, float(ta[ia])))
    return pairs, missing


def _find(grid, t):
    hit = np.nonzero(np.abs(grid - t) <= TIME_RTOL * max(abs(t), 1e-300))[0]
    if hit.size == 0 and t == 0:
        hit = np.nonzero(grid == 0)[0]
    return int(hit[0]) if hit.size else None


def _check_compatible(a, b):
    ma, mb = a.sizes["token_a"], b.sizes["token_a"]
    if ma != mb:
        raise CovsdeInputError(f"datasets have different token counts (m = {ma} vs {mb})")


def ks_w1(x, y):
    """(KS statistic, KS p-value, W1) of two 1-D samples, straight from scipy.stats."""
    ks = scipy.stats.ks_2samp(x, y)
    return float(ks.statistic), float(ks.pvalue), float(scipy.stats.wasserstein_distance(x, y))


def _ks_statistic(x, y):
    """The two-sample KS statistic alone (as scipy.stats.ks_2samp, without its p-value)."""
    x = np.sort(x)
    y = np.sort(y)
    z = np.concatenate([x, y])
    return float(np.max(np.abs(np.searchsorted(x, z, side="right") / x.size
                               - np.searchsorted(y, z, side="right") / y.size)))


def _bootstrap(x, y, rng, n_boot):
    ks = np.empty(n_boot)
    w1 = np.empty(n_boot)
    floor_ks = np.empty(n_boot)
    floor_w1 = np.empty(n_boot)
    for i in range(n_boot):
        xs = rng.choice(x, x.size)
        ys = rng.choice(y, y.size)
        ks[i] = _ks_statistic(xs, ys)
        w1[i] = scipy.stats.wasserstein_distance(xs, ys)
        y1 = rng.choice(y, x.size)
        y2 = rng.choice(y, y.size)
        floor_ks[i] = _ks_statistic(y1, y2)
        floor_w1[i] = scipy.stats.wasserstein_distance(y1, y2)
    return ks, w1, floor_ks, floor_w1


def distances(a, b, stats=("corr:0,1",), times=None, n_boot=200, seed=0, point=None):
    """Compare datasets ``a`` and ``b`` statistic by statistic, time by time.

    Returns a ``pandas.DataFrame`` with one row per (stat, time): KS statistic and
    p-value, W1, bootstrap 95 % intervals of both, noise floors, quantiles of each side,
    alive path counts and dead fractions, and ``dead_warning`` (a side > 1 % dead).
    The frame's ``attrs["missing_times"]`` lists requested times with no partner.
    ``point``: an optional one-path dataset (ODE run); adds ``w1_point``, the W1 distance
    of ``a`` to the point mass at its value (``W1(a, δ_ODE)``, to read beside ``w1``).
    The bootstrap intervals are percentile intervals (KS is biased upward near 0: read
    it beside its floor).
    """
    _check_compatible(a, b)
    if point is not None:
        _check_compatible(a, point)
        if point.sizes["path"] != 1:
            raise CovsdeInputError("point must be a one-path dataset (an ODE run)")
    m = a.sizes["token_a"]
    for s in stats:
        parse_stat(s, m)
    pairs, missing = match_times(a, b, times)
    if not pairs:
        raise CovsdeInputError("the datasets have no time in common (relative tolerance 1e-9)")
    rng = np.random.default_rng(seed)
    rows = []
    for s in stats:
        xa = compute_stat(a["V"], s).values
        xb = compute_stat(b["V"], s).values
        xp = compute_stat(point["V"], s) if point is not None else None
        for ia, ib, t in pairs:
            row = _row(s, t, xa[:, ia], xb[:, ib], rng, n_boot)
            if xp is not None:
                row["w1_point"] = _w1_point(xa[:, ia], xp, t)
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["missing_times"] = missing
    df.attrs["censoring"] = "statistics over the paths alive at each time"
    if df["dead_warning"].any():
        warnings.warn("more than 1 % of paths are dead at some compared times: distances are "
                      "over surviving paths (see dead_fraction_a/b)", stacklevel=2)
    return df


def _w1_point(x, xp, t):
    ip = _find(xp["time"].values, t)
    x = x[np.isfinite(x)]
    if ip is None or x.size == 0:
        return float("nan")
    return float(np.mean(np.abs(x - float(xp.values[0, ip]))))


def _row(stat, t, xa, xb, rng, n_boot):
    n_a, n_b = xa.size, xb.size
    xa = xa[np.isfinite(xa)]
    xb = xb[np.isfinite(xb)]
    dead_a = 1 - xa.size / n_a
    dead_b = 1 - xb.size / n_b
    row = {"stat": stat, "time": t, "n_alive_a": xa.size, "n_alive_b": xb.size,
           "dead_fraction_a": dead_a, "dead_fraction_b": dead_b,
           "dead_warning": bool(max(dead_a, dead_b) > DEAD_WARN)}
    if xa.size == 0 or xb.size == 0:
        return row
    ks, p, w1 = ks_w1(xa, xb)
    row.update(ks=ks, ks_pvalue=p, w1=w1)
    bks, bw1, fks, fw1 = _bootstrap(xa, xb, rng, n_boot)
    row.update(ks_ci_low=np.quantile(bks, 0.025), ks_ci_high=np.quantile(bks, 0.975),
               w1_ci_low=np.quantile(bw1, 0.025), w1_ci_high=np.quantile(bw1, 0.975),
               ks_floor=float(np.median(fks)), w1_floor=float(np.median(fw1)))
    for q, va, vb in zip(QUANTILES, np.quantile(xa, QUANTILES), np.quantile(xb, QUANTILES)):
        row[f"q{int(100 * q)}_a"] = va
        row[f"q{int(100 * q)}_b"] = vb
    return row
