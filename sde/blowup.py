"""Blow-up probability P(τ ≤ T) of a covariance SDE, converged in the step size.

A path *dies* at the first step whose state has a non-finite entry or ``|V_ab| > bound``
(status 2, blew up) or, for Euler–Maruyama only, leaves the positive-definite cone (status
1). τ is the death time; ``P(τ ≤ T)`` is estimated by the dead fraction at T, with a
Clopper–Pearson interval. A dead fraction is a property of the SDE only once it no longer
moves with Δt (docs/theory.md §4.4, §4.8). :func:`blowup_probability` runs the step sizes
dt0, dt0/2, … on one Brownian path per sample path (:mod:`sde.coupled`: every coarse
increment is the sum of the fine ones), so that the change ``P(dt) − P(dt/2)`` between two
levels has a paired interval, much narrower than that of two independent runs. It declares
convergence at the first level whose paired interval, scaled to the bias left at dt for a
scheme of weak order ½ (:func:`bias_factor`), lies inside ``±tolerance``
(:func:`tolerance`: ``max(atol, rtol · P)``), and says *not converged: more paths needed*
when the tolerance is smaller than the paired interval can get at this number of paths, or
*not converged: still moving with dt* when the halvings run out first.
The SPD scheme (docs/theory.md §4.7, the default) has no cone exits, so its dead fraction
converges much sooner than Euler–Maruyama's.

:func:`stability_grid` runs it over a (γ, τ0) grid of shaped attention (for the stability
map of the figure gallery).
"""
from __future__ import annotations

import dataclasses
import math
import time as _time

import numpy as np
from tqdm.auto import tqdm

from ._version import __version__
from .coupled import check_coupled, paired_difference_ci, paired_difference_ci_counts, run_level
from .errors import CovsdeInputError
from .initial import validate_V0
from .runs import as_int, as_seed, check_model, positive, time_grid
from .schema import dead_fraction_ci
from .simulate import DEFAULT_BOUND, SCHEMES

#: the stochastic schemes a blow-up probability can be estimated with.
BLOWUP_METHODS = ("spd", "euler")
DEFAULT_MAX_HALVINGS = 6
#: default tolerance on the bias left at dt: 10 % of the estimate, and never below 0.001
#: (an absolute floor, so that P = 0 can converge).
DEFAULT_RTOL = 0.1
DEFAULT_ATOL = 1e-3
#: the weak order assumed when the change of one halving is turned into the bias left at
#: dt: P(dt) − P(0) ≈ (P(2dt) − P(dt)) / (2^order − 1). ½, not 1: a death is a first exit
#: seen at step ends (discretely monitored exits converge at order ½ in general), and the
#: strong-attention sequences measured in docs/theory.md §4.8 move more slowly than order 1.
DEFAULT_ORDER = 0.5
#: halvings in a row whose bias interval must lie inside the tolerance: 2, because one
#: halving can land on the top of a non-monotone P(dt) (docs/theory.md §4.8).
DEFAULT_CONFIRM = 2
#: the three outcomes (``BlowupResult.status``).
CONVERGED = "converged"
MORE_PATHS = "not converged: more paths needed"
STILL_MOVING = "not converged: still moving with dt"
UNCONFIRMED = "not converged: the last halving is inside the tolerance, none left to confirm it"


def bias_factor(order=DEFAULT_ORDER):
    """1 / (2^order − 1): the bias left at dt per unit change P(2 dt) − P(dt) for a scheme
    of weak order ``order`` (1 for order 1, ≈ 2.41 for order ½)."""
    return 1.0 / (2.0 ** order - 1.0)


def tolerance(probability, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """The tolerance on the bias left at dt at estimate ``probability``: max(atol, rtol · P)."""
    return max(atol, rtol * probability)


def rule_phrase(atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, order=DEFAULT_ORDER,
                confirm=DEFAULT_CONFIRM):
    """The stopping rule as a phrase for captions: "until, at 2 halvings in a row, ..."."""
    return (f"until, at {confirm} halvings in a row, the paired 95 % interval of Δ = "
            f"P(2dt) − P(dt) times {bias_factor(order):.3g} (the bias left at dt for weak "
            f"order {order:g}) lies inside ±max({atol:g}, {rtol:g}·P(dt))")


def criterion(rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, order=DEFAULT_ORDER,
              confirm=DEFAULT_CONFIRM):
    """The convergence rule in words (for attrs, captions and the CLI)."""
    return (f"converged at the first dt where, for {confirm} halving(s) in a row, the paired "
            f"95 % interval of P(2 dt) - P(dt) (coupled runs: one Brownian path, the coarse "
            f"increment the sum of the fine ones) times {bias_factor(order):.3g} = "
            f"1/(2^{order:g} - 1) (the bias left at dt for a scheme of weak order {order:g}) "
            f"lies inside +-max({atol:g}, {rtol:g} P(dt))")


@dataclasses.dataclass
class BlowupResult:
    """The converged (or last) estimate and the whole sequence of step sizes.

    ``probability``, ``ci_low``, ``ci_high``, ``dt``: the estimate at the finest step run
    (the converged one when ``converged``). ``status``: :data:`CONVERGED`,
    :data:`MORE_PATHS` or :data:`STILL_MOVING`. ``sequence``: one dict per step size with
    ``dt``, ``n_steps``, ``seed``, ``n_paths``, ``n_dead``, ``n_blew_up``, ``n_left_cone``,
    ``probability``, ``ci_low``, ``ci_high``, ``wall_time_s``; every row after the first
    also ``difference`` and ``difference_ci`` ([low, high]: the paired 95 % interval of
    P(previous dt) − P(this dt)), ``bias_ci`` (that interval times :func:`bias_factor`: the
    bias left at this dt, compared with the tolerance), ``n_discordant`` (paths dead at one
    of the two steps only) and ``tolerance``. ``attrs``: provenance (incl. ``order``).
    """

    probability: float
    ci_low: float
    ci_high: float
    dt: float
    converged: bool
    sequence: list
    attrs: dict
    status: str = CONVERGED
    paths_needed: int | None = None

    @property
    def limit_ci(self):
        """An interval for the dt → 0 limit, [low, high] (None before any halving).

        For a scheme of weak order p, P(dt) − P(0) ≈ K Δ with Δ = P(2dt) − P(dt) and
        K = :func:`bias_factor` (p) (``attrs["order"]``), so P(0) ≈ P(dt) − K Δ: the
        estimate's interval shifted by the bias interval ``bias_ci``,
        ``[ci_low − KΔ_high, ci_high − KΔ_low]`` (clipped to [0, 1]); meaningful once that
        regime is reached, i.e. for a converged result.
        """
        last = self.sequence[-1]
        if "difference_ci" not in last:
            return None
        k = bias_factor(self.attrs.get("order", DEFAULT_ORDER))
        dlo, dhi = last["difference_ci"]
        return [max(0.0, self.ci_low - k * dhi), min(1.0, self.ci_high - k * dlo)]

    def to_dict(self):
        """One JSON-ready object (the ``--json`` output of ``covsde blowup``)."""
        return {"probability": self.probability, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "dt": self.dt, "converged": self.converged,
                "status": self.status, "paths_needed": self.paths_needed,
                "limit_ci": self.limit_ci, "sequence": self.sequence, **self.attrs}

    def table(self):
        """The sequence as lines of text (a header and one row per step size)."""
        head = (f"{'dt':>10} {'steps':>7} {'paths':>8} {'dead':>7} {'blew up':>7} "
                f"{'left cone':>9} {'P(tau<=T)':>9}  {'95 % CI':<16}  "
                f"P(2dt)-P(dt) [paired 95 % CI]  bias left at dt [95 % CI]  tolerance")
        rows = [head]
        for r in self.sequence:
            line = (f"{r['dt']:>10.4g} {r['n_steps']:>7d} {r['n_paths']:>8d} "
                    f"{r['n_dead']:>7d} {r['n_blew_up']:>7d} {r['n_left_cone']:>9d} "
                    f"{r['probability']:>9.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
            if "difference" in r:
                lo, hi = r["difference_ci"]
                blo, bhi = r["bias_ci"]
                line += (f"  {r['difference']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                         f"        [{blo:+.4f}, {bhi:+.4f}]      +-{r['tolerance']:.4f}")
            rows.append(line)
        return rows


def level_seed(seed, k):
    """A seed derived from ``seed`` and index k (independent streams, fixed by ``seed``)."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def check_method(method, name="method"):
    if method not in BLOWUP_METHODS:
        raise CovsdeInputError(f"{name} must be one of {', '.join(BLOWUP_METHODS)}, "
                               f"got {method!r}", "method")
    return method


def check_tolerances(rtol, atol):
    """rtol ≥ 0 and atol ≥ 0, finite, not both zero; returns them as floats."""
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) \
                or not math.isfinite(v) or v < 0:
            raise CovsdeInputError(f"{name} must be a finite number >= 0, got {v!r}", name)
    if rtol == 0 and atol == 0:
        raise CovsdeInputError("rtol and atol must not both be 0 (no interval is that narrow)",
                               "atol")
    return float(rtol), float(atol)


def resolution_floor(n_dead, n_paths, level=0.95):
    """The narrowest paired interval of P(2dt) − P(dt) at this many paths and deaths: the one
    with no discordant path. Returns its half-width (the larger side)."""
    _, lo, hi = paired_difference_ci_counts(n_dead, 0, 0, n_paths - n_dead, level)
    return max(-lo, hi)


def verdict(low, high, tol, floor, last):
    """The rule on one halving: the bias interval [low, high] (the paired interval of
    P(2 dt) − P(dt) times :func:`bias_factor`), the tolerance ``tol``, the narrowest such
    interval this many paths allow (``floor``, a half-width: :func:`resolution_floor` times
    the same factor) and whether this is the last halving allowed.

    Returns :data:`CONVERGED` (the interval inside ±tol), :data:`MORE_PATHS` (``floor`` >
    tol: no halving can fit the interval inside; or, at the last halving, an interval that
    contains 0 but is wider than ±tol), :data:`STILL_MOVING` (last halving, the interval
    excludes 0 and is not inside ±tol), or None (halve again).
    """
    if -tol <= low and high <= tol:
        return CONVERGED
    if floor > tol:
        return MORE_PATHS
    if last:
        return STILL_MOVING if (low > 0 or high < 0) else MORE_PATHS
    return None


def blowup_probability(model, V0, *, t_end, dt0, n_paths, seed, method="spd",
                       max_halvings=DEFAULT_MAX_HALVINGS, bound=DEFAULT_BOUND, level=0.95,
                       rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, order=DEFAULT_ORDER,
                       confirm=DEFAULT_CONFIRM, progress=None):
    """Estimate ``P(τ ≤ t_end)`` by halving the step from ``dt0`` on coupled runs.

    Level k runs ``n_paths`` paths at ``dt0 / 2**k`` (k = 0 … ``max_halvings``), every level
    on the same Brownian paths (:func:`sde.coupled.run_level`, seed ``seed``). At each k ≥ 1
    the paired interval (level ``level``, :func:`sde.coupled.paired_difference_ci`) of
    ``P(dt_{k-1}) − P(dt_k)``, times ``K = 1/(2^order − 1)`` (the bias left at dt_k for a
    scheme of weak order ``order``; default ½: K ≈ 2.41), is compared with ``±tol``,
    ``tol = max(atol, rtol · P(dt_k))``:

    * inside at ``confirm`` halvings in a row (default 2): converged, the value, interval
      and dt of level k (inside at fewer, or at the last halving: halve again, or at the
      last halving *not converged:* :data:`UNCONFIRMED`);
    * if even an interval with no discordant path (:func:`resolution_floor`, times K) would
      not fit, halving cannot help: stop, *not converged: more paths needed*, with
      ``paths_needed`` ≈ n_paths × K floor / tol (a lower bound);
    * otherwise halve again; after ``max_halvings`` halvings, *not converged: still moving
      with dt* when the last interval excludes 0, else *more paths needed*.

    Returns a :class:`BlowupResult` (the finest level run when not converged).
    """
    check_model(model)
    check_method(method)
    V0 = validate_V0(V0)
    check_coupled(model, V0.shape[0], method)
    t_end = positive("t_end", t_end)
    dt0 = positive("dt0", dt0)
    n_paths = as_int("n_paths", n_paths, 1)
    seed = as_seed(seed)
    max_halvings = as_int("max_halvings", max_halvings, 1)
    if max_halvings > 20:
        raise CovsdeInputError(f"max_halvings must be at most 20, got {max_halvings}",
                               "max_halvings")
    rtol, atol = check_tolerances(rtol, atol)
    order = positive("order", order)
    if order > 2:
        raise CovsdeInputError(f"order must be at most 2 (a weak order), got {order!r}",
                               "order")
    k_bias = bias_factor(order)
    confirm = as_int("confirm", confirm, 1)
    bound = positive("bound", bound)
    if not (0.0 < level < 1.0):
        raise CovsdeInputError(f"level must be in (0, 1), got {level!r}", "level")
    n_steps0, _ = time_grid(t_end, dt0)  # dt0 <= t_end, a whole number of steps
    if np.max(np.abs(V0)) > bound:
        raise CovsdeInputError(f"V0 entries must be at most bound = {bound!r} in absolute "
                               f"value, got max |V0_ab| = {np.max(np.abs(V0))!r}")
    if progress is None:
        progress = True
    sequence = []
    status_text, paths_needed = None, None
    inside = 0  # halvings in a row with the bias interval inside the tolerance
    prev_dead = None
    t_start = _time.perf_counter()
    with tqdm(total=max_halvings + 1, unit="dt", disable=not progress, leave=False,
              desc="blow-up P(tau<=T)") as bar:
        for k in range(max_halvings + 1):
            dt = dt0 / 2 ** k
            t0 = _time.perf_counter()
            status, _ = run_level(model, V0, t_end=t_end, dt0=dt0, level=k,
                                  n_paths=n_paths, seed=seed, method=method, bound=bound)
            dead = status != 0
            n_dead = int(np.count_nonzero(dead))
            _, lo, hi = dead_fraction_ci(n_dead, n_paths, level)
            p = n_dead / n_paths
            row = {"dt": dt, "n_steps": n_steps0 * 2 ** k, "seed": seed, "n_paths": n_paths,
                   "n_dead": n_dead, "n_blew_up": int(np.count_nonzero(status == 2)),
                   "n_left_cone": int(np.count_nonzero(status == 1)),
                   "probability": p, "ci_low": lo, "ci_high": hi}
            bar.update(1)
            bar.set_postfix(dt=f"{dt:.3g}", p=f"{p:.4f}")
            if prev_dead is not None:
                diff, dlo, dhi = paired_difference_ci(prev_dead, dead, level)
                tol = tolerance(p, rtol, atol)
                row.update(difference=diff, difference_ci=[dlo, dhi],
                           bias_ci=[k_bias * dlo, k_bias * dhi],
                           n_discordant=int(np.count_nonzero(prev_dead != dead)),
                           tolerance=tol)
                floor = k_bias * resolution_floor(n_dead, n_paths, level)
                status_text = verdict(k_bias * dlo, k_bias * dhi, tol, floor,
                                      last=k == max_halvings)
                inside = inside + 1 if status_text == CONVERGED else 0
                if status_text == CONVERGED and inside < confirm:
                    status_text = UNCONFIRMED if k == max_halvings else None
                if status_text == MORE_PATHS and floor > tol:
                    paths_needed = int(math.ceil(n_paths * floor / tol))
            row["wall_time_s"] = _time.perf_counter() - t0
            sequence.append(row)
            prev_dead = dead
            if status_text is not None:
                break
    last = sequence[-1]
    attrs = {
        "method": method, "scheme": SCHEMES[method], "seed": seed, "dt0": float(dt0),
        "t_end": float(t_end), "n_paths": n_paths, "max_halvings": max_halvings,
        "bound": bound, "level": level, "rtol": rtol, "atol": atol, "order": order,
        "confirm": confirm,
        "m": int(V0.shape[0]), "V0": V0.tolist(),
        **model.params(), "covsde_version": __version__,
        "wall_time_s": _time.perf_counter() - t_start,
        "criterion": criterion(rtol, atol, order, confirm) + "; a dead path is one that blew up or "
                                             "(euler only) left the PD cone",
    }
    return BlowupResult(last["probability"], last["ci_low"], last["ci_high"], last["dt"],
                        status_text == CONVERGED, sequence, attrs, status_text, paths_needed)


def stability_grid(gammas, tau0s, *, m=3, rho0=0.2, t_end=1.0, dt0=0.05, n_paths=2000,
                   seed=0, method="spd", max_halvings=DEFAULT_MAX_HALVINGS, heads=1,
                   rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, progress=False):
    """Converged blow-up probabilities of shaped attention over a (γ, τ0) grid.

    Returns a ``pandas.DataFrame`` with one row per (gamma, tau0): ``probability``,
    ``ci_low``, ``ci_high``, ``dt``, ``converged``, ``status``, ``n_levels``. V0 is equicorrelated
    (m, ρ0); each grid point uses its own seed derived from ``seed`` and its index.
    """
    import pandas as pd

    from .initial import equicorrelated
    from .models import ShapedAttention

    seed = as_seed(seed)
    V0 = equicorrelated(m, rho0)
    rows = []
    points = [(g, t) for g in gammas for t in tau0s]
    for i, (g, t) in enumerate(tqdm(points, disable=not progress, leave=False)):
        r = blowup_probability(ShapedAttention(float(g), float(t), heads), V0, t_end=t_end,
                               dt0=dt0, n_paths=n_paths, seed=level_seed(seed, 1000 + i),
                               method=method, max_halvings=max_halvings,
                               rtol=rtol, atol=atol, progress=False)
        rows.append({"gamma": float(g), "tau0": float(t), "probability": r.probability,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "dt": r.dt,
                     "converged": r.converged, "status": r.status,
                     "n_levels": len(r.sequence)})
    return pd.DataFrame(rows)


__all__ = ["BLOWUP_METHODS", "BlowupResult", "blowup_probability", "stability_grid",
           "level_seed", "criterion", "rule_phrase", "tolerance", "bias_factor", "verdict",
           "resolution_floor", "check_tolerances", "DEFAULT_RTOL", "DEFAULT_ATOL",
           "DEFAULT_ORDER", "DEFAULT_CONFIRM", "CONVERGED", "MORE_PATHS", "STILL_MOVING",
           "UNCONFIRMED"]
