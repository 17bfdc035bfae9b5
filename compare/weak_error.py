"""Weak errors ``E f(A) − E f(B)`` of bounded path functionals, with confidence intervals.

A weak error is a difference of two means over independent paths: an unbiased estimate with
a normal-theory interval, no noise floor to subtract (unlike a distance between samples,
which is biased upward by sampling noise). The functionals ``f`` (``spec`` strings) are
bounded, so their means exist even where V blows up:

========================  =====================================================================
``corr:a,b``              ρ_ab(t) on paths counted at t, 0 on censored paths
``exp:a``                 exp(−V_aa(t)) on counted paths, 0 on censored ones (its limit as
                          V_aa → ∞)
``alive``                 1{path counted at t}
``exceed:K``              1{sup_{s ≤ t} max_a V_aa(s) > K} over the saved times s (0 < K <
                          bound): a tail probability, see below
``below:STAT:q``          1{path counted at t and STAT(t) ≤ q}, STAT a statistic of
                          :mod:`compare.statistics` (``mineig``, ``effrank``, ``corr:a,b`` …):
                          one point of its distribution function
========================  =====================================================================

"Counted" is the censoring rule of :mod:`compare.distances` (V finite and ``max|V_ab| ≤
bound`` at every saved time up to t), the same on both sides.

**Exceedance.** A path exceeds K by t when ``max_a V_aa > K`` at a saved time ≤ t, or when it
blew up (status 2: an entry passed ``bound > K``) at a time ≤ t. A path that died otherwise
(status 1, left the PD cone; status 3, factorisation failed) before t without having exceeded
K is *undetermined*: it is left out of that mean and counted (``n_undetermined``). Only saved
times are seen: with a save grid coarser than the layers (finite network) or the steps (SDE), a
path that rises above K and falls back between two saved times is missed, so the estimate is a
lower bound of the per-layer (per-step) probability. The SDE's continuous-time supremum is
approached on its step grid with an O(sqrt(dt)) shortfall (discrete monitoring of a
diffusion), the network's per-layer supremum is its own quantity: docs/theory.md §6.8.

**Intervals.** Continuous functionals: ``d ± 1.96 sqrt(s_A²/n_A + s_B²/n_B)`` (Welch, normal
approximation; the functionals are bounded, so the CLT applies). Indicators (``alive``,
``exceed``, ``below``): Wilson score intervals for each side and Newcombe's hybrid score
interval for the difference, which keep their coverage for rare events.
"""
import math
import numbers

import numpy as np
import scipy.stats

from sde.errors import CovsdeInputError

from .distances import usable_paths
from .statistics import compute_stat, parse_stat

LEVEL = 0.95
Z95 = float(scipy.stats.norm.ppf(0.5 + LEVEL / 2))
#: functionals tried by default (a few smooth bounded f and the survival indicator).
DEFAULT_FUNCTIONALS = ("corr:0,1", "exp:0", "alive")
INDICATORS = ("alive", "exceed", "below")


def parse_functional(spec, m, bound):
    """Validate a functional name for m tokens and a censoring bound; return a tuple
    ``(kind, params)``: ``("corr", (a, b))``, ``("exp", a)``, ``("alive", None)``,
    ``("exceed", K)``, ``("below", (stat, q))``."""
    if not isinstance(spec, str):
        raise CovsdeInputError(f"functional must be a name like 'corr:0,1', got {spec!r}")
    kind, _, rest = spec.partition(":")
    if kind == "corr":
        _, a, b = parse_stat(spec, m)
        return kind, (a, b)
    if kind == "exp":
        try:
            a = int(rest)
        except ValueError:
            raise CovsdeInputError(f"functional {spec!r}: expected one token index, e.g. "
                                   f"exp:0") from None
        if not 0 <= a < m:
            raise CovsdeInputError(f"functional {spec!r}: token index {a} out of range "
                                   f"0..{m - 1}")
        return kind, a
    if kind == "alive":
        if rest:
            raise CovsdeInputError(f"functional {spec!r}: alive takes no argument")
        return kind, None
    if kind == "exceed":
        K = _level(spec, rest)
        if not K < bound:
            raise CovsdeInputError(f"functional {spec!r}: the level K must be below the "
                                   f"censoring bound {bound:g} (paths are not followed above "
                                   f"it)")
        return kind, K
    if kind == "below":
        stat, _, q = rest.rpartition(":")
        if not stat:
            raise CovsdeInputError(f"functional {spec!r}: expected below:STAT:q, e.g. "
                                   f"below:mineig:0.05")
        parse_stat(stat, m)
        try:
            q = float(q)
        except ValueError:
            raise CovsdeInputError(f"functional {spec!r}: q must be a number") from None
        if not math.isfinite(q):
            raise CovsdeInputError(f"functional {spec!r}: q must be finite")
        return kind, (stat, q)
    raise CovsdeInputError(f"functional {spec!r}: unknown (use corr:a,b, exp:a, alive, "
                           f"exceed:K or below:STAT:q)")


def _level(spec, rest):
    try:
        K = float(rest)
    except ValueError:
        raise CovsdeInputError(f"functional {spec!r}: expected a level, e.g. exceed:10") from None
    if not (math.isfinite(K) and K > 0):
        raise CovsdeInputError(f"functional {spec!r}: the level must be a finite number > 0")
    return K


def check_functionals(specs, m, bound):
    """A list of functional names, each validated (a single string is an error)."""
    if isinstance(specs, str):
        raise CovsdeInputError(f"functionals must be a list of names, e.g. [{specs!r}], not "
                               f"the single string {specs!r}")
    try:
        specs = list(specs)
    except TypeError:
        raise CovsdeInputError("functionals must be a list of names") from None
    if not specs:
        raise CovsdeInputError("functionals must name at least one functional")
    for s in specs:
        parse_functional(s, m, bound)
    return specs


def is_indicator(spec):
    """Whether the functional takes values in {0, 1} (Wilson / Newcombe intervals)."""
    return spec.partition(":")[0] in INDICATORS


def functional_values(ds, spec, time_index, bound):
    """Per-path values of functional ``spec`` at the saved times ``time_index`` of ``ds``.

    Returns a float array (path, len(time_index)); NaN marks an undetermined path (only for
    ``exceed``: died other than by blow-up, before t, without exceeding K).
    """
    m = ds.sizes["token_a"]
    kind, par = parse_functional(spec, m, bound)
    idx = np.atleast_1d(np.asarray(time_index, dtype=np.intp))
    counted = usable_paths(ds, bound)[:, idx]
    if kind == "alive":
        return counted.astype(float)
    if kind == "exceed":
        return exceedance(ds, par, idx)
    V = ds["V"]
    if kind == "corr":
        a, b = par
        x = compute_stat(V.isel(time=idx), f"corr:{a},{b}").values
        return np.where(counted, np.nan_to_num(x), 0.0)
    if kind == "exp":
        with np.errstate(over="ignore", invalid="ignore"):
            x = np.exp(-V.isel(time=idx, token_a=par, token_b=par).values)
        return np.where(counted, np.nan_to_num(x), 0.0)
    stat, q = par
    x = compute_stat(V.isel(time=idx), stat).values
    with np.errstate(invalid="ignore"):
        return (counted & (x <= q)).astype(float)


def exceedance(ds, K, time_index):
    """``1{sup_{s <= t} max_a V_aa(s) > K}`` per path at the saved times ``time_index``;
    NaN where undetermined (see module doc)."""
    V = ds["V"].values
    time = ds["time"].values
    diag = np.diagonal(V, axis1=-2, axis2=-1)            # (path, time, m)
    with np.errstate(invalid="ignore"):
        over = np.nanmax(np.where(np.isfinite(diag), diag, -np.inf), axis=-1) > K
    seen = np.logical_or.accumulate(over, axis=1)[:, time_index]
    status = np.asarray(ds["status"].values)
    death = np.asarray(ds["death_time"].values, dtype=float)
    t = time[time_index]
    dead_by = (status[:, None] != 0) & (death[:, None] <= t[None, :] * (1 + 1e-12))
    blew = dead_by & (status[:, None] == 2)
    out = (seen | blew).astype(float)
    out[dead_by & ~blew & ~seen] = np.nan
    return out


# --------------------------------------------------------------------------- intervals
def wilson(k, n, z=Z95):
    """Wilson score interval of a proportion k/n: (p, low, high); (nan, 0, 1) at n = 0."""
    if n == 0:
        return float("nan"), 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)


def moments(x, axis=0):
    """(n, sum, sum of squares) of the finite entries of ``x`` along ``axis``: the
    sufficient statistics of a mean and its interval, additive over chunks of paths."""
    ok = np.isfinite(x)
    x0 = np.where(ok, x, 0.0)
    return (ok.sum(axis=axis).astype(float), x0.sum(axis=axis), (x0 * x0).sum(axis=axis))


def _mean_var(mom):
    n, s1, s2 = (float(v) for v in mom)
    if n < 2:
        return n, float("nan"), float("nan")
    mu = s1 / n
    return n, mu, max(s2 - n * mu * mu, 0.0) / (n - 1)


def mean_ci_from(mom, indicator):
    """Mean with a 95 % interval from :func:`moments` ``(n, s1, s2)``: (mean, low, high, n).

    Indicators: Wilson score interval; otherwise the normal interval."""
    n = float(mom[0])
    if indicator:
        return (*wilson(float(mom[1]), n), int(n))
    n, mu, var = _mean_var(mom)
    half = Z95 * math.sqrt(var / n) if n >= 2 else float("nan")
    return mu, mu - half, mu + half, int(n)


def difference_ci_from(mom_a, mom_b, indicator):
    """``mean A − mean B`` with its 95 % interval from two :func:`moments`: (d, low, high).

    Indicators: Newcombe's hybrid score interval from the two Wilson intervals; otherwise
    the Welch normal interval ``d ± 1.96 sqrt(s_A²/n_A + s_B²/n_B)``.
    """
    if indicator:
        pa, la, ua = wilson(float(mom_a[1]), float(mom_a[0]))
        pb, lb, ub = wilson(float(mom_b[1]), float(mom_b[0]))
        d = pa - pb
        return (d, d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2),
                d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2))
    na, mua, va = _mean_var(mom_a)
    nb, mub, vb = _mean_var(mom_b)
    if na < 2 or nb < 2:
        return float("nan"), float("nan"), float("nan")
    d = mua - mub
    half = Z95 * math.sqrt(va / na + vb / nb)
    return d, d - half, d + half


def variance_of_mean(mom, indicator):
    """Squared standard error of the mean (for the rate fit's covariance)."""
    n, mu, var = _mean_var(mom)
    if indicator and n >= 1:
        p = float(mom[1]) / float(mom[0])
        # never 0: a side with no events still has the uncertainty of one event in n
        p = min(max(p, 1.0 / (n + 1)), n / (n + 1))
        return p * (1 - p) / n
    return var / n if n >= 2 else float("nan")


def mean_ci(x, indicator):
    """Mean of the finite entries of ``x`` with a 95 % interval: (mean, low, high, n)."""
    return mean_ci_from(moments(np.asarray(x, dtype=float)), indicator)


def difference_ci(xa, xb, indicator):
    """``mean(xa) − mean(xb)`` over finite entries with its 95 % interval: (d, low, high)."""
    return difference_ci_from(moments(np.asarray(xa, dtype=float)),
                              moments(np.asarray(xb, dtype=float)), indicator)


def check_level(K, name="K"):
    """A tail level K as a float > 0, else a one-line error."""
    if isinstance(K, bool) or not isinstance(K, numbers.Real) or not (math.isfinite(K) and K > 0):
        raise CovsdeInputError(f"{name} must be a finite number > 0, got {K!r}")
    return float(K)
