"""Blow-up probability P(τ ≤ T) of a covariance SDE, converged in the step size.

A path *dies* at the first step whose state has a non-finite entry or ``|V_ab| > bound``
(status 2, blew up) or, for Euler–Maruyama only, leaves the positive-definite cone (status
1). τ is the death time; ``P(τ ≤ T)`` is estimated by the dead fraction at T, with a
Clopper–Pearson interval. A dead fraction is a property of the SDE only once it no longer
moves with Δt (docs/theory.md §4.4): :func:`blowup_probability` halves Δt from ``dt0`` until
the last ``stable_pairs + 1`` estimates agree *pairwise* (every two of their intervals
overlap, the coarsest with the finest included: see :func:`criterion`), and says *not
converged* when that never happens within ``max_halvings`` halvings. The SPD scheme
(docs/theory.md §4.7, the default)
has no cone exits, so its dead fraction converges much sooner than Euler–Maruyama's.

:func:`stability_grid` runs it over a (γ, τ0) grid of shaped attention (for the stability
map of the figure gallery).
"""
from __future__ import annotations

import dataclasses
import time as _time

import numpy as np
from tqdm.auto import tqdm

from .runs import as_int, as_seed, check_model, positive, time_grid
from ._version import __version__
from .errors import CovsdeInputError
from .initial import validate_V0
from .schema import dead_fraction_ci
from .simulate import DEFAULT_BOUND, SCHEMES, simulate

#: the stochastic schemes a blow-up probability can be estimated with.
BLOWUP_METHODS = ("spd", "euler")
DEFAULT_MAX_HALVINGS = 6
#: halvings in the agreement window: the last ``stable_pairs + 1`` estimates must agree
#: pairwise. One halving (the bare criterion) was measured to accept too early: attention
#: γ = 0.5, τ0 = 1, 10⁴ paths, dt0 = 0.1 stopped at dt = 0.05 with 0.77 % [0.61, 0.96]
#: while dt = 0.0125 gives 1.3 % [1.10, 1.55]. Only consecutive pairs (the rule before)
#: accepted a steady drift: γ = 1, τ0 = 0.5, 10⁴ paths went … → 20.1 → 18.0 → 16.6 → 15.5 %
#: and stopped there (the last two consecutive pairs overlap; 18.0 and 15.5 do not).
DEFAULT_STABLE_PAIRS = 2


def criterion(stable_pairs):
    """The convergence rule in words (for attrs, captions and the CLI)."""
    return (f"the last {stable_pairs + 1} estimates (dt, dt/2, ...) agree pairwise: every two "
            f"of their 95 % Clopper-Pearson intervals overlap, the coarsest with the finest "
            f"included (for a first-order scheme the coarsest-finest gap is "
            f"{2 ** stable_pairs - 1}x the bias left at the finest step)")


def agree(rows):
    """Whether every two of ``rows`` (sequence entries) have overlapping intervals."""
    return all(_overlap(a, b) for i, a in enumerate(rows) for b in rows[i + 1:])


@dataclasses.dataclass
class BlowupResult:
    """The converged (or last) estimate and the whole sequence of step sizes.

    ``probability``, ``ci_low``, ``ci_high``, ``dt``: the estimate at the finest step run
    (the converged one when ``converged``). ``sequence``: one dict per step size with
    ``dt``, ``n_steps``, ``seed``, ``n_paths``, ``n_dead``, ``n_blew_up``, ``n_left_cone``,
    ``probability``, ``ci_low``, ``ci_high``, ``wall_time_s``. ``attrs``: provenance.
    """

    probability: float
    ci_low: float
    ci_high: float
    dt: float
    converged: bool
    sequence: list
    attrs: dict

    def to_dict(self):
        """One JSON-ready object (the ``--json`` output of ``covsde blowup``)."""
        return {"probability": self.probability, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "dt": self.dt, "converged": self.converged,
                "sequence": self.sequence, **self.attrs}

    def table(self):
        """The sequence as lines of text (a header and one row per step size)."""
        head = (f"{'dt':>10} {'steps':>7} {'paths':>8} {'dead':>7} {'blew up':>7} "
                f"{'left cone':>9} {'P(tau<=T)':>9}  95 % CI")
        rows = [head]
        for r in self.sequence:
            rows.append(f"{r['dt']:>10.4g} {r['n_steps']:>7d} {r['n_paths']:>8d} "
                        f"{r['n_dead']:>7d} {r['n_blew_up']:>7d} {r['n_left_cone']:>9d} "
                        f"{r['probability']:>9.4f}  [{r['ci_low']:.4f}, {r['ci_high']:.4f}]")
        return rows


def level_seed(seed, k):
    """The seed of the k-th step size: independent streams per level, fixed by ``seed``."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def check_method(method, name="method"):
    if method not in BLOWUP_METHODS:
        raise CovsdeInputError(f"{name} must be one of {', '.join(BLOWUP_METHODS)}, "
                               f"got {method!r}", "method")
    return method


def blowup_probability(model, V0, *, t_end, dt0, n_paths, seed, method="spd",
                       max_halvings=DEFAULT_MAX_HALVINGS, bound=DEFAULT_BOUND, level=0.95,
                       stable_pairs=DEFAULT_STABLE_PAIRS, progress=None):
    """Estimate ``P(τ ≤ t_end)`` by halving the step from ``dt0`` until it converges.

    Step size k is ``dt0 / 2**k`` (k = 0 … ``max_halvings``), run with ``n_paths`` fresh
    paths (seed :func:`level_seed`). It stops at the first k at which the Clopper–Pearson
    intervals (level ``level``) of levels k − ``stable_pairs`` … k overlap pairwise (not only
    consecutive pairs: a steady drift in dt, each halving moving the estimate by less than an
    interval, is not accepted): converged, value and dt of level k.
    Otherwise it stops after ``max_halvings`` halvings, not converged (the finest estimate
    is returned, flagged). Returns a :class:`BlowupResult`.
    """
    check_model(model)
    check_method(method)
    V0 = validate_V0(V0)
    t_end = positive("t_end", t_end)
    dt0 = positive("dt0", dt0)
    n_paths = as_int("n_paths", n_paths, 1)
    seed = as_seed(seed)
    max_halvings = as_int("max_halvings", max_halvings, 1)
    if max_halvings > 30:
        raise CovsdeInputError(f"max_halvings must be at most 30, got {max_halvings}",
                               "max_halvings")
    stable_pairs = as_int("stable_pairs", stable_pairs, 1)
    if stable_pairs > max_halvings:
        raise CovsdeInputError(f"stable_pairs must be at most max_halvings = {max_halvings}, "
                               f"got {stable_pairs}", "stable_pairs")
    bound = positive("bound", bound)
    if not (0.0 < level < 1.0):
        raise CovsdeInputError(f"level must be in (0, 1), got {level!r}", "level")
    time_grid(t_end, dt0)  # dt0 <= t_end and a whole number of steps (halving keeps it so)
    if progress is None:
        progress = True
    sequence = []
    converged = False
    t_start = _time.perf_counter()
    with tqdm(total=max_halvings + 1, unit="dt", disable=not progress, leave=False,
              desc="blow-up P(tau<=T)") as bar:
        for k in range(max_halvings + 1):
            dt = dt0 / 2 ** k
            s = level_seed(seed, k)
            t0 = _time.perf_counter()
            ds = simulate(model, V0, t_end=t_end, dt=dt, n_paths=n_paths, seed=s,
                          save_every=10 ** 12, method=method, bound=bound, progress=False)
            status = ds.status.values
            n_dead = int(np.count_nonzero(status))
            ci = _ci(n_dead, n_paths, level)
            sequence.append({
                "dt": dt, "n_steps": int(ds.attrs["n_steps"]), "seed": s,
                "n_paths": n_paths, "n_dead": n_dead,
                "n_blew_up": int(np.count_nonzero(status == 2)),
                "n_left_cone": int(np.count_nonzero(status == 1)),
                "probability": n_dead / n_paths, "ci_low": ci[0], "ci_high": ci[1],
                "wall_time_s": _time.perf_counter() - t0,
            })
            bar.update(1)
            bar.set_postfix(dt=f"{dt:.3g}", p=f"{n_dead / n_paths:.4f}")
            if k >= stable_pairs and agree(sequence[-1 - stable_pairs:]):
                converged = True
                break
    last = sequence[-1]
    attrs = {
        "method": method, "scheme": SCHEMES[method], "seed": seed, "dt0": float(dt0),
        "t_end": float(t_end), "n_paths": n_paths, "max_halvings": max_halvings,
        "bound": bound, "level": level, "stable_pairs": stable_pairs, "m": int(V0.shape[0]),
        "V0": V0.tolist(),
        **model.params(), "covsde_version": __version__,
        "wall_time_s": _time.perf_counter() - t_start,
        "criterion": criterion(stable_pairs) + "; a dead path is one that blew up or "
                                               "(euler only) left the PD cone",
    }
    return BlowupResult(last["probability"], last["ci_low"], last["ci_high"], last["dt"],
                        converged, sequence, attrs)


def _overlap(a, b):
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


def _ci(n_dead, n_total, level):
    _, lo, hi = dead_fraction_ci(n_dead, n_total, level)
    return lo, hi


def stability_grid(gammas, tau0s, *, m=3, rho0=0.2, t_end=1.0, dt0=0.05, n_paths=2000,
                   seed=0, method="spd", max_halvings=DEFAULT_MAX_HALVINGS, heads=1,
                   stable_pairs=DEFAULT_STABLE_PAIRS, progress=False):
    """Converged blow-up probabilities of shaped attention over a (γ, τ0) grid.

    Returns a ``pandas.DataFrame`` with one row per (gamma, tau0): ``probability``,
    ``ci_low``, ``ci_high``, ``dt``, ``converged``, ``n_levels``. V0 is equicorrelated
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
                               stable_pairs=stable_pairs, progress=False)
        rows.append({"gamma": float(g), "tau0": float(t), "probability": r.probability,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "dt": r.dt,
                     "converged": r.converged, "n_levels": len(r.sequence)})
    return pd.DataFrame(rows)


__all__ = ["BLOWUP_METHODS", "BlowupResult", "blowup_probability", "stability_grid",
           "level_seed", "criterion", "agree"]
