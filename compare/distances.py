"""Distances between two datasets of the common schema, with statistics that can be trusted.

What is reported, and why (see also docs/guide.md, "Reading `covsde compare`")
--------------------------------------------------------------------------------
A distance between two empirical laws (KS, W1) is biased upward: two samples of one law are
at KS ≈ 0.9/sqrt(n_eff), not 0. A percentile bootstrap of such a distance is centred on the
biased value plus its own bias, so its "95 % interval" can exclude the estimate and says
nothing about the distance between the true laws. We therefore report

* ``ks`` (two-sample Kolmogorov–Smirnov statistic) with ``ks_pvalue`` (the two-sample test
  of scipy.stats.ks_2samp): a valid test of "same law";
* ``w1`` (1-Wasserstein distance, scipy.stats.wasserstein_distance) with ``w1_pvalue``, a
  permutation p-value ``(1 + #{W1_perm >= W1}) / (1 + n_boot)`` (valid at every size);
* ``ks_noise_floor`` / ``w1_noise_floor``: the mean of the same distance over the
  ``n_boot`` permutations of the pooled sample (two samples of the same sizes from one law:
  what the distance is when there is no difference). A distance is informative only well
  above its floor. These are reference levels, not intervals;
* quantile differences ``qXX_a_minus_b`` with percentile-bootstrap 95 % intervals
  (``qXX_a_minus_b_ci95_low/high``; paths resampled with replacement within each side,
  ``n_boot`` draws). A quantile difference is a smooth functional, not a distance: it is
  unbiased to first order, can be negative, and its bootstrap interval has near-nominal
  coverage whether the laws are equal (true value 0) or shifted (true value the shift) —
  ``tests/test_distances.py`` measures both, with a control that the interval excludes 0
  under a shift. These are the only intervals printed.

Censoring (one rule, both sides; docs/theory.md §6.4)
----------------------------------------------------
A path counts at time t if its V is finite at t **and** ``max_ab |V_ab| <= bound`` at every
saved time up to t, where ``bound`` is the SDE's blow-up bound (attr ``bound`` of the
datasets that have one, the smaller if both; else 1e4). The SDE already kills such paths;
finite networks have no bound, so the same rule is applied to them here, at their saved
times. The censored fraction of each side is reported beside every distance, with
``censor_warning`` where it exceeds 1 %.

A one-path dataset (an ODE run) is not a distribution: it is refused as side ``a`` or ``b``
and enters only as ``point``, giving ``w1_a_to_ode = W1(a, δ_ODE) = mean |x − x_ODE|``.

Length: the distances, their permutation floors and bootstrap intervals share one censoring
rule, one time matching and one resampling discipline (batched numba kernels), kept in one
module so that every number of a row is computed the same way.
"""
import math
import numbers
import warnings

import numba
import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from sde.errors import CovsdeInputError

from .statistics import compute_stat, parse_stat

TIME_RTOL = 1e-9
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CENSOR_WARN = 0.01
#: fewer resamples than this is an error: a 95 % percentile interval needs at least one
#: draw in each 2.5 % tail (40 = 1 / 0.025).
MIN_N_BOOT = 40
#: below this many resamples the result carries a stated warning (end points of the
#: intervals and the permutation p-values move visibly between seeds).
WARN_N_BOOT = 200
DEFAULT_N_BOOT = 200
DEFAULT_BOUND = 1e4
#: elements of one batch of resampling weights (memory ~ 8 bytes each, several arrays).
_BATCH_ELEMENTS = 2_000_000

#: column → meaning, printed by ``covsde compare --help`` and in docs/guide.md.
LEGEND = {
    "stat": "statistic: corr:a,b = ρ_ab, V:a,b = V_ab, mineig = λ_min(V), effrank = "
            "effective rank of V, tokensim = mean off-diagonal ρ, consensus = μ(X)/‖X‖_F, "
            "log-consensus = log μ(X)/‖X‖_F (carried, no round-off floor)",
    "time": "t = depth / width",
    "n_paths_a, n_paths_b": "paths in each dataset",
    "n_used_a, n_used_b": "paths counted at t (alive and below the bound so far)",
    "censored_a, censored_b": "fraction of paths not counted at t (censoring rule)",
    "ks": "two-sample Kolmogorov–Smirnov statistic",
    "ks_pvalue": "p-value of the two-sample KS test (scipy.stats.ks_2samp), H0: same law",
    "ks_noise_floor": "mean KS over n_boot permutations of the pooled sample (its value "
                      "under H0 at these sizes)",
    "w1": "1-Wasserstein distance (scipy.stats.wasserstein_distance)",
    "w1_noise_floor": "mean W1 over the same permutations",
    "w1_pvalue": "permutation p-value of W1, (1 + #{W1_perm >= W1}) / (1 + n_boot)",
    "qXX_a, qXX_b": "XX % quantiles of each side (XX = 10, 25, 50, 75, 90)",
    "qXX_a_minus_b": "difference of those quantiles, A − B",
    "qXX_a_minus_b_ci95_low/high": "percentile-bootstrap 95 % interval of the difference "
                                   "(paths resampled within each side, n_boot draws)",
    "w1_a_to_ode": "with an ODE: W1(A, point mass at the ODE value) = mean |x_A − x_ODE|",
    "censor_warning": "a side has more than 1 % of its paths censored at t",
}


def legend_text(width=88):
    """The column legend as plain text lines."""
    import textwrap

    out = []
    for k, v in LEGEND.items():
        out += textwrap.wrap(f"{k}: {v}", width, subsequent_indent="    ")
    return "\n".join(out)


# --------------------------------------------------------------------------- validation
def _check_dataset(ds, name):
    from sde.schema import validate_dataset

    if not isinstance(ds, xr.Dataset):
        raise CovsdeInputError(f"{name} must be a covsde dataset (xarray.Dataset), got "
                               f"{type(ds).__name__}")
    return validate_dataset(ds, name)


def _check_stats(stats, m):
    if isinstance(stats, str):
        raise CovsdeInputError(f"stats must be a list of statistic names, e.g. [{stats!r}], "
                               f"not the single string {stats!r}")
    try:
        stats = list(stats)
    except TypeError:
        raise CovsdeInputError(f"stats must be a list of statistic names, got "
                               f"{type(stats).__name__}") from None
    if not stats:
        raise CovsdeInputError("stats must name at least one statistic")
    for s in stats:
        if not isinstance(s, str):
            raise CovsdeInputError(f"stats: each statistic is a name like 'corr:0,1', got "
                                   f"{s!r}")
        parse_stat(s, m)
    return stats


def _check_times(times):
    if times is None:
        return None
    if isinstance(times, numbers.Real) and not isinstance(times, bool):
        times = [times]
    if isinstance(times, str):
        raise CovsdeInputError(f"times must be a number or a list of numbers, got {times!r}")
    try:
        arr = np.asarray(list(times), dtype=float)
    except (TypeError, ValueError):
        raise CovsdeInputError(f"times must be a number or a list of numbers, got "
                               f"{times!r}") from None
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise CovsdeInputError(f"times must be finite numbers >= 0, got {times!r}")
    return arr


def check_n_boot(n_boot, name="n_boot"):
    """``n_boot`` as an int >= :data:`MIN_N_BOOT`, else a one-line error naming ``name``."""
    if isinstance(n_boot, (float, np.floating)) and float(n_boot).is_integer():
        n_boot = int(n_boot)
    if (isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral)
            or n_boot < MIN_N_BOOT):
        raise CovsdeInputError(f"{name} must be an integer >= {MIN_N_BOOT} (a 95 % interval "
                               f"needs a resample in each 2.5 % tail), got {n_boot!r}")
    return int(n_boot)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise CovsdeInputError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------- times
def match_times(a, b, times=None):
    """Times present in both datasets (relative tolerance 1e-9).

    Returns ``(pairs, missing)``: pairs of (index in a, index in b, time), and the
    requested times (or a's times when ``times`` is None) that have no partner.
    """
    ta = a["time"].values
    tb = b["time"].values
    wanted = ta if times is None else np.atleast_1d(np.asarray(times, dtype=float))
    pairs, missing = [], []
    for t in wanted:
        ia = _find(ta, t)
        ib = _find(tb, t)
        if ia is None or ib is None:
            missing.append(float(t))
        else:
            pairs.append((ia, ib, float(ta[ia])))
    return pairs, missing


def common_times(a, b):
    """The times saved in both datasets (relative tolerance 1e-9), sorted."""
    pairs, _ = match_times(a, b)
    return sorted(p[2] for p in pairs)


def nearest_times(available, t, k=2):
    """The ``k`` available times nearest to ``t`` (for error messages)."""
    available = np.asarray(sorted(set(float(x) for x in available)))
    if available.size == 0:
        return []
    order = np.argsort(np.abs(available - t), kind="stable")[:k]
    return sorted(float(available[i]) for i in order)


def _find(grid, t):
    hit = np.nonzero(np.abs(grid - t) <= TIME_RTOL * max(abs(t), 1e-300))[0]
    if hit.size == 0 and t == 0:
        hit = np.nonzero(grid == 0)[0]
    return int(hit[0]) if hit.size else None


def _check_compatible(a, b, name_b="b"):
    ma, mb = a.sizes["token_a"], b.sizes["token_a"]
    if ma != mb:
        raise CovsdeInputError(f"datasets have different token counts (m = {ma} in a, "
                               f"{mb} in {name_b})")


# --------------------------------------------------------------------------- censoring
def censoring_bound(*datasets):
    """The blow-up bound of the censoring rule: the smallest ``bound`` attr, else 1e4."""
    bounds = [float(ds.attrs["bound"]) for ds in datasets
              if ds is not None and "bound" in ds.attrs]
    return min(bounds) if bounds else DEFAULT_BOUND


def usable_paths(ds, bound):
    """Boolean (path, time): V finite at t and ``max|V_ab| <= bound`` at every saved time
    up to t (the SDE's death rule, applied at saved times)."""
    V = ds["V"].values
    ok = np.empty(V.shape[:2], dtype=bool)
    for i in range(V.shape[1]):  # one time at a time: no second copy of V
        ok[:, i] = (np.abs(V[:, i]) <= bound).all(axis=(-1, -2))  # NaN compares False
    return np.logical_and.accumulate(ok, axis=1)


def censoring_text(bound):
    return (f"a path counts at time t if V is finite at t and max|V_ab| <= {bound:g} at every "
            f"saved time up to t (the SDE blow-up bound), applied to both sides")


# --------------------------------------------------------------------------- kernels
def _sorted_pool(x, y):
    """Pooled values sorted, and where a's / b's values sit in that order."""
    z = np.concatenate([x, y])
    order = np.argsort(z, kind="stable")
    return z[order], order


def _distance_from_weights(z, gaps, ends, wa, wb, n_a, n_b):
    """KS and W1 of the weighted empirical laws ``wa / n_a`` and ``wb / n_b`` on the
    sorted pooled support ``z`` (weights: rows of (B, N) arrays). ``ends``: positions where
    a run of tied values ends (where an empirical CDF is evaluated)."""
    d = np.cumsum(wa, axis=1, dtype=float) / n_a
    d -= np.cumsum(wb, axis=1, dtype=float) / n_b
    np.abs(d, out=d)
    ks = d[:, ends].max(axis=1)
    w1 = d[:, :-1] @ gaps
    return ks, w1


def _support(z):
    gaps = np.diff(z)
    ends = np.append(gaps > 0, True)
    return gaps, ends


@numba.njit(cache=True)
def _permutation_kernel(gaps, ends, n_a, n_b, u, out_ks, out_w1):  # pragma: no cover (numba)
    """Fisher–Yates relabellings of the sorted pooled sample (``u``: one row of uniforms per
    permutation), then KS and W1 of the two relabelled empirical CDFs in one pass."""
    N = n_a + n_b
    lab = np.empty(N, np.int8)
    for p in range(u.shape[0]):
        for i in range(N):
            lab[i] = 1 if i < n_a else 0
        for i in range(N - 1, 0, -1):
            j = int(u[p, i] * (i + 1))
            tmp = lab[i]
            lab[i] = lab[j]
            lab[j] = tmp
        ca = 0
        ks = 0.0
        w1 = 0.0
        for i in range(N):
            ca += lab[i]
            d = abs(ca / n_a - (i + 1 - ca) / n_b)
            if ends[i] and d > ks:
                ks = d
            if i < N - 1:
                w1 += d * gaps[i]
        out_ks[p] = ks
        out_w1[p] = w1


def permutation_null(x, y, n_perm, rng):
    """KS and W1 of ``n_perm`` random relabellings of the pooled sample (sizes kept).

    The uniforms come from ``rng`` (numpy Generator), so results depend only on its seed.
    """
    z, _ = _sorted_pool(x, y)
    gaps, ends = _support(z)
    n_a, n_b = x.size, y.size
    N = n_a + n_b
    ks, w1 = np.empty(n_perm), np.empty(n_perm)
    batch = max(1, _BATCH_ELEMENTS // N)
    for s in range(0, n_perm, batch):
        k = min(batch, n_perm - s)
        _permutation_kernel(gaps, ends, n_a, n_b, rng.random((k, N)), ks[s:s + k],
                            w1[s:s + k])
    return ks, w1


def bootstrap_distances(x, y, n_boot, rng, shared_seed=None):
    """KS and W1 between bootstrap resamples of ``x`` and ``y`` (with replacement, sizes
    kept), without re-sorting: a resample is a vector of counts on the pooled support.

    These replicates describe the sampling variability of the (biased) plug-in distances;
    they are used for the standard error of a fitted convergence slope, never printed as an
    interval of the distance itself. ``shared_seed``: draw the resample of ``y`` number j
    from ``default_rng([shared_seed, j])``, so that calls with the same ``y`` (a shared
    reference sample, e.g. the SDE across widths) use the same resamples of it.
    """
    z, order = _sorted_pool(x, y)
    gaps, ends = _support(z)
    n_a, n_b = x.size, y.size
    N = n_a + n_b
    inv = np.empty(N, dtype=np.intp)
    inv[order] = np.arange(N)
    ks, w1 = np.empty(n_boot), np.empty(n_boot)
    batch = max(1, _BATCH_ELEMENTS // N)
    for s in range(0, n_boot, batch):
        k = min(batch, n_boot - s)
        wa = np.zeros((k, N))
        wb = np.zeros((k, N))
        wa[:, inv[:n_a]] = _counts(rng, n_a, k)
        if shared_seed is None:
            wb[:, inv[n_a:]] = _counts(rng, n_b, k)
        else:
            for j in range(k):
                wb[j, inv[n_a:]] = _counts(np.random.default_rng([shared_seed, s + j]), n_b, 1)
        ks[s:s + k], w1[s:s + k] = _distance_from_weights(z, gaps, ends, wa, wb, n_a, n_b)
    return ks, w1


def _counts(rng, n, k):
    """(k, n) multinomial counts of k resamples of size n with replacement."""
    idx = rng.integers(0, n, size=(k, n)) + n * np.arange(k)[:, None]
    return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(float)


def bootstrap_quantiles(x, n_boot, rng, qs=QUANTILES):
    """``n_boot`` bootstrap replicates of the sample quantiles ``qs`` of ``x`` (numpy's
    default 'linear' rule), shape (n_boot, len(qs)).

    Exact and cheap: a resample of size n is ``x_(floor(n U_i))`` for i.i.d. uniforms U_i,
    so its r-th order statistic is ``x_(floor(n U_(r)))`` with U_(r) the r-th uniform order
    statistic; the few order statistics the quantiles need are drawn jointly by the chain
    ``U_(s) = U_(r) + (1 − U_(r)) · Beta(s − r, n − s + 1)``. Same law as resampling the
    whole sample, in O(len(qs)) per replicate instead of O(n).
    """
    xs = np.sort(x)
    n = xs.size
    h = (n - 1) * np.asarray(qs, dtype=float)
    lo = np.floor(h).astype(np.int64)
    frac = h - lo
    hi = np.minimum(lo + 1, n - 1)
    ranks = np.unique(np.concatenate([lo, hi])) + 1  # 1-based order-statistic ranks
    U = np.empty((n_boot, ranks.size))
    prev_r, prev_u = 0, np.zeros(n_boot)
    for k, r in enumerate(ranks):
        step = rng.beta(r - prev_r, n - r + 1, size=n_boot)
        prev_u = prev_u + (1 - prev_u) * step
        U[:, k] = prev_u
        prev_r = r
    order_stats = xs[np.minimum(np.floor(n * U).astype(np.int64), n - 1)]
    col = {int(r): k for k, r in enumerate(ranks)}
    v_lo = order_stats[:, [col[int(r) + 1] for r in lo]]
    v_hi = order_stats[:, [col[int(r) + 1] for r in hi]]
    return v_lo + frac * (v_hi - v_lo)


def quantile_difference_ci(x, y, n_boot, rng, qs=QUANTILES, level=0.95):
    """Quantiles of x and y, their differences x − y and percentile-bootstrap intervals
    (x and y resampled independently, :func:`bootstrap_quantiles`).

    Returns (qa, qb, diff, low, high), arrays over ``qs``.
    """
    qa = np.quantile(x, qs)
    qb = np.quantile(y, qs)
    diff = bootstrap_quantiles(x, n_boot, rng, qs) - bootstrap_quantiles(y, n_boot, rng, qs)
    alpha = (1 - level) / 2
    return qa, qb, qa - qb, np.quantile(diff, alpha, axis=0), np.quantile(diff, 1 - alpha,
                                                                         axis=0)


def ks_w1(x, y):
    """(KS statistic, KS p-value, W1) of two 1-D samples, straight from scipy.stats."""
    ks = scipy.stats.ks_2samp(x, y)
    return float(ks.statistic), float(ks.pvalue), float(scipy.stats.wasserstein_distance(x, y))


def compare_samples(x, y, n_boot, rng):
    """Every number of one row for two 1-D samples (already censored): see module doc."""
    out = {}
    ks, p, w1 = ks_w1(x, y)
    pks, pw1 = permutation_null(x, y, n_boot, rng)
    out.update(ks=ks, ks_pvalue=p, ks_noise_floor=float(pks.mean()), w1=w1,
               w1_noise_floor=float(pw1.mean()),
               w1_pvalue=float((1 + np.count_nonzero(pw1 >= w1 * (1 - 1e-12))) / (1 + n_boot)))
    qa, qb, d, lo, hi = quantile_difference_ci(x, y, n_boot, rng)
    for q, va, vb, dd, low, high in zip(QUANTILES, qa, qb, d, lo, hi):
        k = f"q{int(round(100 * q))}"
        out[f"{k}_a"], out[f"{k}_b"] = float(va), float(vb)
        out[f"{k}_a_minus_b"] = float(dd)
        out[f"{k}_a_minus_b_ci95_low"] = float(low)
        out[f"{k}_a_minus_b_ci95_high"] = float(high)
    return out


# --------------------------------------------------------------------------- main entry
def distances(a, b, stats=("corr:0,1",), times=None, n_boot=DEFAULT_N_BOOT, seed=0,
              point=None, bound=None, progress=None):
    """Compare datasets ``a`` and ``b`` statistic by statistic, time by time.

    Parameters
    ----------
    a, b : covsde datasets with more than one path (e.g. finite network, SDE).
    stats : list of statistic names (``corr:a,b``, ``V:a,b``, ``mineig``, ``effrank``);
        a single string is an error (it would be read character by character).
    times : a number or a list of numbers (default: every time saved in both).
    n_boot : permutations and bootstrap resamples, an integer >= 40 (a warning below 200).
    seed : integer >= 0 for the permutations and resamples.
    point : optional one-path dataset (ODE run): adds ``w1_a_to_ode``.
    bound : censoring bound (default: the datasets' SDE ``bound`` attr, else 1e4).
    progress : show a tqdm bar (None: only when there are more than 20 rows).

    Returns a ``pandas.DataFrame``, one row per (stat, time); columns in :data:`LEGEND`.
    ``attrs``: ``missing_times``, ``censoring``, ``bound``, ``n_boot``, ``seed``,
    ``warnings`` (list of strings, also issued as Python warnings).
    """
    a = _check_dataset(a, "a")
    b = _check_dataset(b, "b")
    _check_compatible(a, b)
    for ds, name in ((a, "a"), (b, "b")):
        if ds.sizes["path"] < 2:
            raise CovsdeInputError(
                f"{name} has one path (a deterministic run such as the ODE): it is a point, "
                f"not a distribution; pass it as point= (CLI: --ode) instead")
    if point is not None:
        point = _check_dataset(point, "point")
        _check_compatible(a, point, "point")
        if point.sizes["path"] != 1:
            raise CovsdeInputError("point must be a one-path dataset (an ODE run), got "
                                   f"{point.sizes['path']} paths")
    m = a.sizes["token_a"]
    stats = _check_stats(stats, m)
    times = _check_times(times)
    n_boot = check_n_boot(n_boot)
    seed = _check_seed(seed)
    if bound is None:
        bound = censoring_bound(a, b)
    elif not (isinstance(bound, numbers.Real) and math.isfinite(bound) and bound > 0):
        raise CovsdeInputError(f"bound must be a finite number > 0, got {bound!r}")
    pairs, missing = match_times(a, b, times)
    if not pairs:
        raise CovsdeInputError(no_common_time_message(a, b, times))
    notes = []
    if n_boot < WARN_N_BOOT:
        notes.append(f"only {n_boot} resamples: interval end points and permutation p-values "
                     f"vary between seeds (use >= {WARN_N_BOOT})")
    ua, ub = usable_paths(a, bound), usable_paths(b, bound)
    rng = np.random.default_rng(seed)
    rows = []
    bar = _bar(len(stats) * len(pairs), progress)
    try:
        for s in stats:
            xa = compute_stat(a, s).values
            xb = compute_stat(b, s).values
            xp = compute_stat(point, s) if point is not None else None
            fa, fb = ua & np.isfinite(xa), ub & np.isfinite(xb)  # log-consensus from V: NaN
            for ia, ib, t in pairs:
                row = _row(s, t, xa[:, ia], xb[:, ib], fa[:, ia], fb[:, ib], rng, n_boot)
                if xp is not None:
                    row["w1_a_to_ode"] = _w1_point(xa[:, ia][fa[:, ia]], xp, t)
                rows.append(row)
                if bar is not None:
                    bar.update()
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows)
    if df["censor_warning"].any():
        notes.append("more than 1 % of paths are censored on a side at some compared times: "
                     "statistics are over the paths still counted (see censored_a/b)")
    df.attrs.update(missing_times=missing, censoring=censoring_text(bound), bound=bound,
                    n_boot=n_boot, seed=seed, warnings=notes)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return df


def no_common_time_message(a, b, times):
    if times is None:
        return "the datasets have no time in common (relative tolerance 1e-9)"
    ta, tb = a["time"].values, b["time"].values
    both = common_times(a, b)
    parts = []
    for t in times:
        near = nearest_times(both, t) if both else []
        parts.append(f"t = {t:g}: nearest common " + (", ".join(f"{x:g}" for x in near)
                                                      if near else "none"))
    extra = "" if both else (f" (a has {ta.size} times in [{ta.min():g}, {ta.max():g}], b "
                             f"{tb.size} in [{tb.min():g}, {tb.max():g}])")
    return ("no time in common at the requested times (relative tolerance 1e-9): "
            + "; ".join(parts) + extra)


def _bar(total, progress):
    if progress is None:
        progress = total > 20
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="compare", unit="row", leave=False)


def _w1_point(x, xp, t):
    ip = _find(xp["time"].values, t)
    x = x[np.isfinite(x)]
    if ip is None or x.size == 0:
        return float("nan")
    return float(np.mean(np.abs(x - float(xp.values[0, ip]))))


def _row(stat, t, xa, xb, ua, ub, rng, n_boot):
    n_a, n_b = xa.size, xb.size
    xa = xa[ua & np.isfinite(xa)]
    xb = xb[ub & np.isfinite(xb)]
    cen_a = 1 - xa.size / n_a
    cen_b = 1 - xb.size / n_b
    row = {"stat": stat, "time": t, "n_paths_a": n_a, "n_paths_b": n_b,
           "n_used_a": xa.size, "n_used_b": xb.size,
           "censored_a": cen_a, "censored_b": cen_b,
           "censor_warning": bool(max(cen_a, cen_b) > CENSOR_WARN)}
    if xa.size < 2 or xb.size < 2:
        return row
    row.update(compare_samples(xa, xb, n_boot, rng))
    return row
