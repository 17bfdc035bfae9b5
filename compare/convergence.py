"""Weak-error convergence of finite networks to their covariance SDE (``covsde convergence``).

For a model and V0, at each width n and each time t = d/n (a whole number of layers at every
width), the weak error

    e(n, t) = E f(V_finite,n(t)) − E f(V_SDE(t))

of each bounded functional f (:mod:`compare.weak_error`: ``corr:a,b``, ``exp:a``, ``alive``,
``exceed:K``, ``below:STAT:q``) is estimated with a 95 % interval: an unbiased difference of
two means, with no noise floor. Then the rate r of ``e(n) ≈ C n^-r`` is fitted by generalised
least squares with an interval (:func:`fit_rate`). docs/theory.md §6.8 derives the rates to
expect.

Samples
-------
- One SDE sample (``sde_paths`` paths, step ``dt``, ``method``: SPD by default, no cone exits)
  shared by every width, saved every ``sde_save_every`` steps (below); and a check sample
  at ``2 dt`` (independent):
  ``dt_check = E f(SDE at 2dt) − E f(SDE at dt)`` estimates the step bias left at ``dt`` (a
  weak-order-1 scheme has bias(2dt) − bias(dt) ≈ bias(dt)), reported beside the errors.
- One finite sample per width (``n_paths`` paths, the default sampler: exact reduced where it
  exists), saved at every layer.
- Paths are drawn in chunks of 2048 (the SDE lane kernel's fill), each reduced at once to
  the sums of f and f² (:func:`compare.weak_error.moments`), so memory stays bounded at any
  path count. The network is saved at every layer; the SDE every ``sde_save_every`` steps
  (1 unless a chunk would exceed 2²⁵ numbers; at most 16, i.e. never coarser than the finest
  network's layers), and an SDE blow-up between saved steps is still counted (status);
  the seed of chunk c of source s is ``SeedSequence([seed, s, c])``
  (s = 0 the SDE, 1 the check, 2 + n the network at width n): the result depends on the
  seed and the path counts only, never on threads.

The shared SDE sample makes the errors of different widths correlated: the rate fit uses
the full covariance ``diag(var F_n) + var S · 11ᵀ``.

Length: the shared SDE sample, its dt check, the per-width samples and the correlated rate
fit are one estimator (the fit's covariance comes from how the samples are shared); the CLI
and the figure live in compare/cli/convergence.py and compare/figures/convergence.py.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import time as _time

import numpy as np
import scipy.optimize
import scipy.stats

from sde import __version__
from sde.errors import CovsdeInputError
from sde.initial import validate_V0
from sde.runs import as_int, as_seed, check_model
from sde.simulate import DEFAULT_BOUND, simulate

from .weak_error import (DEFAULT_FUNCTIONALS, Z95, check_functionals, difference_ci_from,
                         functional_values, is_indicator, mean_ci_from, moments,
                         variance_of_mean)

#: a chunk holds at most about this many saved numbers (paths × saved times × m²): 256 MB.
CHUNK_NUMBERS = 2 ** 25
#: paths per chunk: the SDE's lane kernel fills 8 RNG blocks of 256 paths at once, so a
#: chunk of 2048 paths costs about what 256 cost (measured 0.93 s vs 0.78 s of CPU at m = 2,
#: 4096 steps): chunks are 2048 paths (the last one shorter).
CHUNK_PATHS = 2048
#: the SDE is saved every SDE_SAVE_MAX steps at most (dt <= 1/(16 n_max), so at most every
#: 1/n_max: never coarser than the finest network's layers).
SDE_SAVE_MAX = 16
#: a weak error is "resolved to 10 %" when its interval's half-width is at most this
#: fraction of |e|.
TARGET_RELATIVE = 0.10
TIME_RTOL = 1e-9
#: the stochastic schemes the SDE side may use
SDE_METHODS = ("euler", "spd")
#: the fitted rate is searched in this range; a rate whose standard error exceeds
#: MAX_RATE_SE is reported with a note "unresolved" and not drawn.
RATE_BOUNDS = (-2.0, 5.0)
#: an exceedance row carries a note when the SDE's save grid is coarser than
#: 1/(MONITOR_FACTOR n_max) (:func:`monitoring`)
MONITOR_FACTOR = 4
MAX_RATE_SE = 0.5


def save_stride(m, n_steps, cap):
    """The smallest power of two ``s`` (s <= cap, dividing n_steps) with a chunk of
    :data:`CHUNK_PATHS` paths saved every s steps within :data:`CHUNK_NUMBERS` numbers."""
    s = 1
    while (s < cap and n_steps % (2 * s) == 0
           and CHUNK_PATHS * (n_steps // s + 1) * m * m > CHUNK_NUMBERS):
        s *= 2
    return s


def _chunk_seed(seed, source, c):
    ss = np.random.SeedSequence([int(seed), int(source), int(c)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def default_dt(widths, t_end):
    """The largest power of two <= 1/(16 max width) that divides ``t_end``.

    The SDE's own step bias must stay well below the weak error of the widest network: on
    the shaped MLP (m = 2) the SPD scheme's bias of E exp(−V_00) at t = 1 was measured at
    ≈ 0.6 dt, the network's error at ≈ 0.3/n, so dt = 1/(2n) would be as wrong as the
    network itself; 1/(16 n) keeps it near a tenth. The 2dt check reports what is left."""
    dt = 2.0 ** -math.ceil(math.log2(16 * max(widths)))
    while abs(round(t_end / dt) - t_end / dt) > 1e-9 * t_end / dt:
        dt /= 2
    return dt


# --------------------------------------------------------------------------- validation
def _check_widths(widths):
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise CovsdeInputError(f"widths must be a list of integers >= 2, got {widths!r}")
    out = [as_int("widths", w, 2) for w in widths]
    if len(out) < 2:
        raise CovsdeInputError(f"widths must hold at least 2 widths (a rate needs 2), got "
                               f"{out}")
    if len(set(out)) != len(out):
        raise CovsdeInputError(f"widths must be distinct, got {out}")
    return sorted(out)


def _check_times(times, t_end, widths, dt):
    if times is None:
        times = [t_end / 4, t_end / 2, t_end]
    if isinstance(times, numbers.Real):
        times = [times]
    out = []
    for t in times:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (0 < t <= t_end):
            raise CovsdeInputError(f"times must be numbers in (0, t_end = {t_end:g}], got {t!r}")
        for n in list(widths) + [1.0 / dt, 1.0 / (2 * dt)]:
            k = t * n
            if abs(k - round(k)) > 1e-9 * max(k, 1.0):
                what = (f"width {n}" if n in widths else f"the SDE step {1.0 / n:g}")
                raise CovsdeInputError(f"times: t = {t:g} is not a whole number of layers at "
                                       f"{what} (t · n = {k:g}); use widths and times whose "
                                       f"products are integers, e.g. powers of two")
        out.append(float(t))
    return sorted(set(out))


def _check_model_for_study(model):
    check_model(model)
    mask = getattr(model, "mask", None)
    if mask == "sparse":
        raise CovsdeInputError("mask: a sparse mask is drawn from the run's seed, and the study "
                               "uses one seed per sample; pass the realised mask as a 0/1 "
                               "matrix instead")
    return model


# --------------------------------------------------------------------------- sampling
class _Accumulator:
    """Sums (n, Σf, Σf²) of every functional at every time, over chunks of paths."""

    def __init__(self, functionals, n_times):
        self.mom = {f: np.zeros((3, n_times)) for f in functionals}
        self.n_undetermined = {f: np.zeros(n_times, dtype=np.int64) for f in functionals}
        self.n_paths = 0

    def add(self, ds, time_index, bound):
        self.n_paths += ds.sizes["path"]
        for f, mom in self.mom.items():
            x = functional_values(ds, f, time_index, bound)
            mom += np.asarray(moments(x, axis=0))
            self.n_undetermined[f] += np.count_nonzero(np.isnan(x), axis=0)


def _time_index(ds, times):
    grid = ds["time"].values
    idx = []
    for t in times:
        hit = np.nonzero(np.abs(grid - t) <= TIME_RTOL * t)[0]
        if hit.size == 0:  # pragma: no cover (times are validated against the grids)
            raise RuntimeError(f"time {t} not saved")
        idx.append(int(hit[0]))
    return np.asarray(idx)


def _run_source(make, n_paths, per_chunk, seed, source, times, functionals, bound, bar):
    acc = _Accumulator(functionals, len(times))
    c = 0
    for start in range(0, n_paths, per_chunk):
        k = min(per_chunk, n_paths - start)
        ds = make(k, _chunk_seed(seed, source, c))
        acc.add(ds, _time_index(ds, times), bound)
        c += 1
        if bar is not None:
            bar.update(k)
    return acc


# --------------------------------------------------------------------------- rate fit
def fit_rate(widths, errors, cov):
    """Fit ``e(n) = C n^-r`` by generalised least squares.

    ``errors``: (k,) estimates at ``widths``; ``cov``: (k, k) their covariance. Returns a
    dict ``rate``, ``rate_ci`` [low, high] (± 1.96 standard errors of the GLS fit),
    ``amplitude``, ``chi2``, ``dof``, ``fit_p_value`` (χ² goodness of fit: a small value
    says one power does not describe the points) and ``note``. NaN when no width resolves a
    nonzero error (every interval contains 0) or the fit fails.
    """
    n = np.asarray(widths, dtype=float)
    e = np.asarray(errors, dtype=float)
    cov = np.asarray(cov, dtype=float)
    nan = {"rate": float("nan"), "rate_ci": [float("nan"), float("nan")],
           "amplitude": float("nan"), "chi2": float("nan"), "dof": int(n.size - 2),
           "fit_p_value": float("nan")}
    se = np.sqrt(np.diag(cov))
    ok = np.isfinite(e) & np.isfinite(se)
    if ok.sum() < 3:
        return {**nan, "note": "fewer than 3 widths with an estimate: no rate"}
    n, e, cov, se = n[ok], e[ok], cov[np.ix_(ok, ok)], se[ok]
    if not np.any(np.abs(e) > Z95 * se):
        return {**nan, "note": "no width resolves a nonzero error (every interval contains "
                               "0): no rate"}
    # start: log-log line through the resolved points
    res = np.abs(e) > Z95 * se
    if res.sum() >= 2:
        slope = np.polyfit(np.log(n[res]), np.log(np.abs(e[res])), 1)[0]
        r0 = float(np.clip(-slope, 0.05, 3.0))
    else:
        r0 = 0.75
    i0 = int(np.argmax(np.abs(e) / se))
    c0 = float(e[i0] * n[i0] ** r0)

    def model(x, c, r):
        return c * x ** (-r)

    try:
        (c, r), pcov = scipy.optimize.curve_fit(model, n, e, p0=(c0, r0), sigma=cov,
                                                absolute_sigma=True, maxfev=20000,
                                                bounds=([-np.inf, RATE_BOUNDS[0]],
                                                        [np.inf, RATE_BOUNDS[1]]))
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as exc:
        return {**nan, "note": f"the fit failed ({exc})"}
    resid = e - model(n, c, r)
    chi2 = float(resid @ np.linalg.solve(cov, resid))
    dof = int(n.size - 2)
    sr = float(math.sqrt(pcov[1, 1])) if np.isfinite(pcov[1, 1]) else float("nan")
    note = ""
    if not (sr <= MAX_RATE_SE) or not (RATE_BOUNDS[0] < r < RATE_BOUNDS[1]):
        note = (f"rate unresolved (standard error {sr:.2g} > {MAX_RATE_SE:g}, or at the fit's "
                f"bounds {RATE_BOUNDS}): more paths or a wider range of widths needed")
    return {"rate": float(r), "rate_ci": [float(r - Z95 * sr), float(r + Z95 * sr)],
            "amplitude": float(c), "chi2": chi2, "dof": dof,
            "fit_p_value": float(scipy.stats.chi2.sf(chi2, dof)) if dof > 0 else float("nan"),
            "note": note}


# --------------------------------------------------------------------------- result
@dataclasses.dataclass
class ConvergenceResult:
    """One entry of ``rows`` per (functional, time): see :meth:`to_dict`."""

    rows: list
    attrs: dict

    def to_dict(self):
        """The ``--json`` document: ``attrs`` (settings, provenance) and ``results``, one per
        (functional, time), each with ``widths``, ``errors`` ([estimate, ci_low, ci_high]
        per width), ``rate``, ``rate_ci`` and the rest (see :func:`convergence_study`)."""
        return {**self.attrs, "results": self.rows}

    @classmethod
    def from_dict(cls, doc):
        """Rebuild from :meth:`to_dict` (e.g. a saved ``--json`` document)."""
        doc = dict(doc)
        return cls(doc.pop("results"), doc)

    def row(self, functional, time):
        for r in self.rows:
            if r["functional"] == functional and math.isclose(r["time"], time, rel_tol=1e-9):
                return r
        raise KeyError((functional, time))

    def table(self):
        """Text lines: one block per (functional, time)."""
        lines = []
        for r in self.rows:
            lo, hi = r["rate_ci"]
            rate = ("no rate: " + r["note"] if not math.isfinite(r["rate"]) else
                    f"rate {r['rate']:.3f} [{lo:.3f}, {hi:.3f}] (fit p {r['fit_p_value']:.2g})"
                    + (f"; {r['note']}" if r["note"] else ""))
            sde_m, sde_lo, sde_hi = r["sde_mean"]
            dc = r["dt_check"]
            lines.append(f"{r['functional']} at t = {r['time']:g}: SDE {sde_m:.5g} "
                         f"[{sde_lo:.5g}, {sde_hi:.5g}]; dt check (2dt − dt) {dc[0]:+.2g} "
                         f"[{dc[1]:+.2g}, {dc[2]:+.2g}]; {rate}")
            if r.get("monitoring_note"):
                lines.append(f"    note: {r['monitoring_note']}")
            for n, (e, elo, ehi), rel in zip(r["widths"], r["errors"], r["relative_half_width"]):
                flag = "" if rel <= TARGET_RELATIVE else "  (interval > 10 % of |e|)"
                lines.append(f"    n = {n:5d}  e = {e:+.3e}  [{elo:+.3e}, {ehi:+.3e}]{flag}")
        return lines


def convergence_study(model, V0, *, widths, t_end, n_paths, seed, times=None, sde_paths=None,
                      dt=None, method="spd", functionals=DEFAULT_FUNCTIONALS,
                      bound=DEFAULT_BOUND, dt_check_paths=None, sde_model=None,
                      time_correction=False, progress=None, log=None):
    """Weak errors e(n, t) of ``functionals`` at ``widths`` and ``times``, and their rates.

    Parameters
    ----------
    model, V0 : the model object and (m, m) initial covariance (both sides).
    widths : >= 2 distinct widths; every time must be a whole number of layers at each.
    t_end : horizon; ``times`` (default t_end/4, t_end/2, t_end) in (0, t_end].
    n_paths : finite paths per width (an int, or one int per width).
    seed : int >= 0.
    sde_paths : SDE paths (default ``n_paths`` at the largest width).
    dt : SDE step (default :func:`default_dt`: a power of two <= 1/(16 max width)).
    method : ``spd`` (default) or ``euler``.
    functionals : names of :mod:`compare.weak_error`.
    bound : censoring / blow-up bound on both sides (default 1e4).
    dt_check_paths : paths of the 2dt check (default ``sde_paths``; 0 skips it).
    sde_model : the SDE side's model (default ``model``): another model makes a control,
        e.g. a perturbed coefficient, whose error must not vanish with n.
    time_correction : compare width n with the SDE whose MLP drift is scaled by
        g_n = 2/(s₊² + s₋²) (:func:`corrected_model`; Li–Nica–Roy ReLU MLP only,
        docs/theory.md §6.8): one SDE sample per width (``sde_paths`` each), independent.

    Returns a :class:`ConvergenceResult`. Each row: ``functional``, ``time``, ``widths``,
    ``errors`` [[e, low, high], …], ``relative_half_width`` (interval half-width / |e|),
    ``finite_means`` [[mean, low, high], …], ``sde_mean`` [mean, low, high], ``dt_check``
    [d, low, high] (E f at 2dt − at dt), ``n_undetermined`` (finite per width, then SDE),
    ``rate``, ``rate_ci``, ``amplitude``, ``chi2``, ``dof``, ``fit_p_value``, ``note``;
    exceedance rows also ``sde_monitoring`` and ``monitoring_note`` (:func:`monitoring`).
    """
    _check_model_for_study(model)
    sde_model = model if sde_model is None else _check_model_for_study(sde_model)
    if time_correction:
        corrected_model(sde_model, 2)  # validates the model kind
    V0 = validate_V0(V0)
    m = V0.shape[0]
    widths = _check_widths(widths)
    if isinstance(t_end, bool) or not isinstance(t_end, numbers.Real) or not (
            math.isfinite(t_end) and t_end > 0):
        raise CovsdeInputError(f"t_end must be a finite number > 0, got {t_end!r}")
    t_end = float(t_end)
    seed = as_seed(seed)
    if isinstance(n_paths, numbers.Integral) and not isinstance(n_paths, bool):
        paths = [as_int("n_paths", n_paths, 2)] * len(widths)
    else:
        paths = [as_int("n_paths", p, 2) for p in n_paths]
        if len(paths) != len(widths):
            raise CovsdeInputError(f"n_paths: one count per width ({len(widths)}), got "
                                   f"{len(paths)}")
    sde_paths = paths[-1] if sde_paths is None else as_int("sde_paths", sde_paths, 2)
    if method not in SDE_METHODS:
        raise CovsdeInputError(f"method must be one of {', '.join(SDE_METHODS)}, got "
                               f"{method!r}")
    if dt is None:
        dt = default_dt(widths, t_end)
    elif isinstance(dt, bool) or not isinstance(dt, numbers.Real) or not (0 < dt <= t_end / 2):
        raise CovsdeInputError(f"dt must be a number in (0, t_end/2], got {dt!r}")
    dt = float(dt)
    if abs(round(t_end / (2 * dt)) - t_end / (2 * dt)) > 1e-9 * t_end / dt:
        raise CovsdeInputError(f"t_end must be a whole number of 2·dt steps (the check "
                               f"sample), got t_end/dt = {t_end / dt:g}")
    if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or not (
            math.isfinite(bound) and bound > 0):
        raise CovsdeInputError(f"bound must be a finite number > 0, got {bound!r}")
    functionals = check_functionals(functionals, m, bound)
    times = _check_times(times, t_end, widths, dt)
    t_max = max(times)
    check_paths = sde_paths if dt_check_paths is None else as_int("dt_check_paths",
                                                                  dt_check_paths, 0)
    if check_paths == 1:
        raise CovsdeInputError("dt_check_paths must be 0 (no check) or >= 2, got 1")

    import finite

    def sde_maker(step, which=None, stride=1):
        def make(k, s):
            return simulate(which or sde_model, V0, t_end=t_max, dt=step, n_paths=k, seed=s,
                            save_every=stride, method=method, bound=bound, progress=False)
        return make

    def finite_maker(n):
        def make(k, s):
            return finite.sample(model, V0, width=n, n_paths=k, seed=s, t_end=t_max,
                                 save_every=1, progress=False)
        return make

    total = sde_paths * (len(widths) if time_correction else 1) + check_paths + sum(paths)
    bar = None
    if progress or (progress is None and total > 20_000):
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="convergence", unit="path", leave=False)
    t0 = _time.perf_counter()
    walls = {}
    try:
        n_steps = int(round(t_max / dt))
        tic = _time.perf_counter()
        stride = save_stride(m, n_steps, SDE_SAVE_MAX)
        while stride > 1 and any(abs(t / (stride * dt) - round(t / (stride * dt))) > 1e-9
                                 * t / dt for t in times):
            stride //= 2  # every requested time must be a saved one
        if time_correction:
            sde_accs = [_run_source(sde_maker(dt, corrected_model(sde_model, n), stride),
                                    sde_paths, CHUNK_PATHS, seed, 10_000_000 + n, times,
                                    functionals, bound, bar) for n in widths]
        else:
            sde_accs = [_run_source(sde_maker(dt, stride=stride), sde_paths, CHUNK_PATHS,
                                    seed, 0, times, functionals, bound, bar)] * len(widths)
        walls["sde"] = _time.perf_counter() - tic
        chk_acc = None
        if check_paths:
            tic = _time.perf_counter()
            chk_acc = _run_source(sde_maker(2 * dt, stride=max(1, stride // 2)), check_paths,
                                  CHUNK_PATHS, seed, 1, times, functionals, bound, bar)
            walls["sde_2dt"] = _time.perf_counter() - tic
        fin_acc = []
        for n, k in zip(widths, paths):
            tic = _time.perf_counter()
            fin_acc.append(_run_source(finite_maker(n), k, CHUNK_PATHS, seed, 2 + n, times,
                                       functionals, bound, bar))
            walls[f"finite_{n}"] = _time.perf_counter() - tic
            if log is not None:
                log(f"  width {n}: {k} paths, {walls[f'finite_{n}']:.1f} s")
    finally:
        if bar is not None:
            bar.close()
    rows = []
    for f in functionals:
        ind = is_indicator(f)
        for j, t in enumerate(times):
            row = _row(f, ind, j, t, widths, sde_accs, chk_acc, fin_acc,
                       shared=not time_correction)
            if f.startswith("exceed:"):
                row.update(monitoring(stride * dt, widths))
            rows.append(row)
    attrs = {"kind": "weak-error convergence", **model.params(), "m": m, "V0": V0.tolist(),
             "widths": widths, "times": times, "t_end": t_end, "n_paths": paths,
             "sde_paths": sde_paths, "dt_check_paths": check_paths, "dt": dt,
             "method": method, "sde_save_every": stride, "bound": bound,
             "functionals": functionals, "seed": seed,
             "version": __version__, "wall_time_s": _time.perf_counter() - t0,
             "wall_times_s": walls,
             "sde_model": sde_model.params(), "time_correction": bool(time_correction),
             "interval": "95 %: Welch normal interval of a difference of means; indicators: "
                         "Wilson per side, Newcombe hybrid score for the difference",
             "rate_fit": "GLS fit of e(n) = C n^-r with the covariance diag(var F_n) + var "
                         "S·11ᵀ (one SDE sample shared by every width); rate_ci = r ± 1.96 "
                         "se",
             "censoring": f"a path counts at t if V is finite and max|V_ab| <= {bound:g} at "
                          f"every saved time up to t, both sides (network: every layer; SDE: "
                          f"every {stride} steps of {dt:g}, and every blow-up)"}
    return ConvergenceResult(rows, attrs)


def monitoring(grid, widths):
    """What the SDE's save grid does to an exceedance row.

    The network's supremum runs over its layers (spacing 1/n), the SDE's over its saved
    steps (spacing ``grid`` = save stride × dt; blow-ups are counted at every step). Both
    fall short of the continuous supremum by about C sqrt(spacing) (docs/theory.md §6.8), so
    the measured e(n) is the true one minus about C sqrt(grid): against a reference
    monitored like a network of width 1/grid. Returns ``sde_monitoring`` (the grid) and
    ``monitoring_note`` (empty when grid <= 1/(4 n_max), where that offset is at most half
    of the finest network's own shortfall)."""
    n_max = max(widths)
    note = ""
    if grid > 1.0 / (MONITOR_FACTOR * n_max) * (1 + 1e-9):
        note = (f"the SDE is monitored every {grid:g} (like a network of width "
                f"{1.0 / grid:g}), not finer than 1/({MONITOR_FACTOR} n_max): e(n) at the "
                f"largest widths is biased toward 0 (by about sqrt(n·{grid:g}) of its "
                f"discrete-monitoring part)")
    return {"sde_monitoring": grid, "monitoring_note": note}


def _row(f, ind, j, t, widths, sde_accs, chk_acc, fin_acc, shared):
    sde_acc = sde_accs[-1]
    ms = sde_acc.mom[f][:, j]
    var_s = variance_of_mean(ms, ind)
    sde_mean = mean_ci_from(ms, ind)[:3]
    errors, means, rel, var_f = [], [], [], []
    for acc, sacc in zip(fin_acc, sde_accs):
        mf = acc.mom[f][:, j]
        msi = sacc.mom[f][:, j]
        d, lo, hi = difference_ci_from(mf, msi, ind)
        errors.append([d, lo, hi])
        means.append(list(mean_ci_from(mf, ind)[:3]))
        rel.append((hi - lo) / 2 / abs(d) if d != 0 and math.isfinite(d) else float("inf"))
        var_f.append(variance_of_mean(mf, ind)
                     + (0.0 if shared else variance_of_mean(msi, ind)))
    cov = np.diag(var_f) + (var_s if shared else 0.0)
    fit = fit_rate(widths, [e[0] for e in errors], cov)
    if chk_acc is not None:
        dt_check = list(difference_ci_from(chk_acc.mom[f][:, j], ms, ind))
    else:
        dt_check = [float("nan")] * 3
    und = [int(a.n_undetermined[f][j]) for a in fin_acc] + [int(sde_acc.n_undetermined[f][j])]
    return {"functional": f, "time": t, "widths": list(widths), "errors": errors,
            "relative_half_width": rel, "finite_means": means, "sde_mean": list(sde_mean),
            "dt_check": dt_check, "n_undetermined": und, **fit}


# --------------------------------------------------------------------------- theory
def corrected_model(model, width):
    """The finite-width corrected SDE of a Li–Nica–Roy ReLU MLP at ``width``: the same model
    with ``c± → c± sqrt(g_n)``, ``g_n = 2/(s₊² + s₋²)``, ``s± = 1 + c±/sqrt(n)``. Its drift
    ν ∝ (c₊ − c₋)² is the network's exact one-layer mean drift times n (docs/theory.md
    §6.8); its diffusion is unchanged."""
    from sde.models import ShapedMLP

    if not isinstance(model, ShapedMLP) or model.activation != "relu":
        raise CovsdeInputError("time_correction: implemented for the Li–Nica–Roy shaped ReLU "
                               "MLP (arch mlp, activation relu) only")
    sp = 1.0 + model.c_plus / math.sqrt(width)
    sm = 1.0 + model.c_minus / math.sqrt(width)
    g = math.sqrt(2.0 / (sp * sp + sm * sm))
    return ShapedMLP(c_plus=model.c_plus * g, c_minus=model.c_minus * g)



def _asymmetric_relu(model):
    """Whether a sub-layer is a shaped ReLU with c₊ + c₋ ≠ 0 (docs/theory.md §6.8)."""
    from sde.activations import ShapedReLU

    for layer in model.sublayers():
        act = getattr(layer, "shaped_activation", None)
        if isinstance(act, ShapedReLU) and layer.c_plus + layer.c_minus != 0:
            return True
    return False


def predicted_rate(model, functional):
    """The weak-error rate docs/theory.md §6.8 predicts, and why: ``(rate or None, reason)``.

    - ``exceed:K``: 1/2 (a supremum over layers 1/n apart misses O(n^-1/2) of the
      continuous one: discrete monitoring of a diffusion);
    - ``alive``, ``below:…``: None (an exit event of the blow-up bound; an indicator of a
      non-smooth function): measured, not predicted;
    - smooth ``corr``, ``exp``: 1 (per-layer moments match the SDE's to O(n^-2) by the
      sign symmetries of the weights, logits and Gaussian pre-activations), except with a
      shaped ReLU with c₊ + c₋ ≠ 0, whose normaliser c(n) breaks the symmetry at O(n^-1/2)
      and scales the MLP drift by g_n = 2/(s₊² + s₋²) = 1 − (c₊ + c₋)/sqrt(n) + O(1/n): 1/2
      (for ``exp:a`` of the Li–Nica–Roy MLP alone 1, as V_aa does not feel that drift).
    """
    kind = functional.partition(":")[0]
    if kind == "exceed":
        return 0.5, "discrete monitoring: the network's supremum is over layers 1/n apart"
    if kind in ("alive", "below"):
        return None, "an indicator of an exit or non-smooth event: measured, not predicted"
    if _asymmetric_relu(model):
        if kind == "exp" and model.arch == "mlp":
            return 1.0, "V_aa of the Li–Nica–Roy MLP does not feel the c(n) drift factor"
        return 0.5, "shaped ReLU with c₊ + c₋ ≠ 0: MLP drift scaled by 1 − (c₊+c₋)/sqrt(n)"
    return 1.0, "per-layer moments match the SDE's to O(n^-2) (sign symmetries)"
