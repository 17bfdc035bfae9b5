"""Tail probabilities compared: ``P(sup_{s <= t} max_a V_aa(s) > K)`` on both sides.

For each level K and common time t: the probability on each side with its Wilson 95 %
interval, and the difference A − B with Newcombe's hybrid score interval
(:mod:`compare.weak_error`, functional ``exceed:K``). The supremum runs over the saved times
up to t; an SDE path that blew up (an entry above the bound > K) by t counts as exceeding,
one that died otherwise without having exceeded K is undetermined (left out, counted).

What a save grid misses: a path that rises above K and falls back between two saved times
is not seen, so each side's estimate is a lower bound of its per-layer (network) or
per-step (SDE) probability; ``save_every_a/b`` say how many layers / steps lie between saved
times (1 = every one seen). Save every layer (``covsde finite --save-every 1``) for a
network's exact per-layer supremum.
"""
import numpy as np
import pandas as pd

from sde.errors import CovsdeInputError

from .distances import _check_compatible, _check_dataset, censoring_bound, match_times
from .weak_error import (check_level, difference_ci_from, functional_values, mean_ci_from,
                         moments)

#: column → meaning (``covsde compare --tail``).
TAIL_LEGEND = {
    "level": "K: the event is sup over saved times s <= t of max_a V_aa(s) > K",
    "time": "t = depth / width",
    "p_a, p_b": "the probability on each side (paths with a determined outcome)",
    "p_a_low/high, p_b_low/high": "Wilson score 95 % interval of each",
    "p_a_minus_b, …_low/high": "difference A − B with Newcombe's hybrid score 95 % interval",
    "n_a, n_b": "paths with a determined outcome",
    "undetermined_a/b": "paths that died (cone exit, failed factorisation) before t without "
                        "exceeding K: left out",
    "save_every_a/b": "layers (network) or steps (SDE) per saved time: with more than 1, "
                      "excursions between saved times are missed (a lower bound)",
}


def _save_every(ds):
    steps = np.asarray(ds["step"].values) if "step" in ds.coords or "step" in ds else None
    if steps is not None and steps.size > 1:
        d = np.diff(steps)
        return int(d.max())
    return int(ds.attrs.get("save_every", 1))


def tail_probabilities(a, b, levels, times=None, bound=None):
    """Exceedance probabilities of both datasets at each level and common time.

    ``levels``: numbers 0 < K < bound; ``times``: as in :func:`compare.distances.distances`
    (default every common time). Returns a DataFrame, one row per (level, time), columns in
    :data:`TAIL_LEGEND`; ``attrs``: ``bound``, ``notes`` (what the save grids miss).
    """
    a = _check_dataset(a, "a")
    b = _check_dataset(b, "b")
    _check_compatible(a, b)
    if bound is None:
        bound = censoring_bound(a, b)
    if isinstance(levels, (int, float)):
        levels = [levels]
    levels = [check_level(K, "tail level K") for K in levels]
    if not levels:
        raise CovsdeInputError("tail levels: give at least one level K")
    for K in levels:
        if not K < bound:
            raise CovsdeInputError(f"tail level K = {K:g} must be below the censoring bound "
                                   f"{bound:g}")
    pairs, missing = match_times(a, b, times)
    if not pairs:
        raise CovsdeInputError("the datasets have no time in common for the tail comparison")
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    se_a, se_b = _save_every(a), _save_every(b)
    rows = []
    for K in levels:
        xa = functional_values(a, f"exceed:{K:g}", ia, bound)
        xb = functional_values(b, f"exceed:{K:g}", ib, bound)
        for j, (_, _, t) in enumerate(pairs):
            ma, mb = moments(xa[:, j]), moments(xb[:, j])
            pa, la, ua, na = mean_ci_from(ma, True)
            pb, lb, ub, nb = mean_ci_from(mb, True)
            d, dl, dh = difference_ci_from(ma, mb, True)
            rows.append({"level": K, "time": t, "p_a": pa, "p_a_low": la, "p_a_high": ua,
                         "p_b": pb, "p_b_low": lb, "p_b_high": ub, "p_a_minus_b": d,
                         "p_a_minus_b_low": dl, "p_a_minus_b_high": dh, "n_a": na, "n_b": nb,
                         "undetermined_a": int(np.isnan(xa[:, j]).sum()),
                         "undetermined_b": int(np.isnan(xb[:, j]).sum()),
                         "save_every_a": se_a, "save_every_b": se_b})
    df = pd.DataFrame(rows)
    notes = []
    for side, k in (("A", se_a), ("B", se_b)):
        if k > 1:
            notes.append(f"{side} is saved every {k} layers/steps: excursions above K between "
                         f"saved times are missed, so p_{side.lower()} is a lower bound of "
                         f"its per-layer/per-step probability")
    df.attrs.update(bound=bound, notes=notes, missing_times=missing)
    return df


def format_tail_table(df):
    """Fixed-width text lines of :func:`tail_probabilities`."""
    head = ["K", "t", "P(A) [95% CI]", "P(B) [95% CI]", "A-B [95% CI]", "n A", "n B",
            "undet A", "undet B"]
    rows = []
    for r in df.to_dict("records"):
        rows.append([f"{r['level']:g}", f"{r['time']:.3g}",
                     f"{r['p_a']:.4f} [{r['p_a_low']:.4f}, {r['p_a_high']:.4f}]",
                     f"{r['p_b']:.4f} [{r['p_b_low']:.4f}, {r['p_b_high']:.4f}]",
                     f"{r['p_a_minus_b']:+.4f} [{r['p_a_minus_b_low']:+.4f}, "
                     f"{r['p_a_minus_b_high']:+.4f}]",
                     str(r["n_a"]), str(r["n_b"]), str(r["undetermined_a"]),
                     str(r["undetermined_b"])])
    widths = [max(len(head[i]), *(len(c[i]) for c in rows)) for i in range(len(head))]
    lines = ["tail probabilities P(sup_{s<=t} max_a V_aa(s) > K), sup over saved times "
             f"(A saved every {df['save_every_a'].iloc[0]}, B every "
             f"{df['save_every_b'].iloc[0]} layers/steps)",
             "  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(c, widths)) for c in rows]
    lines += [f"note: {n}" for n in df.attrs.get("notes", [])]
    return lines
