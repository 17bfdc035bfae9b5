"""Coupled runs of one covariance SDE at the step sizes dt0, dt0/2, dt0/4, … (one Brownian path).

Level k integrates at ``dt_k = dt0 / 2**k``. All levels are driven by the *same* Brownian
path: level k's increments are refined from level k − 1's by the Brownian bridge, so every
coarse increment is exactly the sum of the two fine ones below it (docs/theory.md §4.8).
The difference of a path functional between two levels is then a paired difference, whose
interval (:func:`paired_difference_ci`) is much narrower than that of two independent runs.

Random numbers. Paths are cut into blocks of :data:`sde.runs.RNG_BLOCK` paths. Block ``c``
draws level 0 from ``Generator(PCG64(SeedSequence(seed, spawn_key=(c, 0))))`` and the bridge
refinement to level j from ``spawn_key=(c, j)``, so a block's level-k increments depend on
(seed, c, k) only: not on the number of levels run before, on chunking or on threads. Each
step's increment is an (2, m, m) array of independent N(0, dt_k) entries: ``G`` (the
symmetric noise is ``(G + Gᵀ)/√2``) and ``G'`` (attention's second noise), the layout of the
supplied-increment kernels (:func:`sde._kernels.integrate_supplied`).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

from . import _kernels, masks
from .errors import CovsdeInputError
from .runs import RNG_BLOCK

#: the schemes with a supplied-increment kernel (method name → kernel).
COUPLED_KERNELS = {"spd": functools.partial(_kernels.integrate_supplied, method="spd"),
                   "euler": _kernels.integrate_supplied}


def block_generator(seed, block, level):
    """The Generator of RNG block ``block`` at refinement ``level`` (module docstring)."""
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(seed, spawn_key=(int(block), int(level)))))


#: at most this many float64 values of increments in memory at once (per slice of paths).
MAX_SLICE_VALUES = 2 ** 22


def coupled_increments(seed, block, level, n_paths, n_steps0, m, dt0):
    """The Brownian increments of RNG block ``block`` at ``level`` (step ``dt0 / 2**level``).

    Returns an array (n_paths, n_steps0 · 2**level, 2, m, m) of N(0, dt0/2**level) entries.
    Level j's step pair (2i, 2i+1) sums to level j − 1's step i: given the coarse increment
    X over 2h, the fine ones are ``X/2 ± sqrt(h/2) ξ`` with ξ ~ N(0, 1) independent of X
    (the Brownian bridge at the midpoint).
    """
    gens = [block_generator(seed, block, j) for j in range(level + 1)]
    return refine_increments(gens, n_paths, n_steps0, m, dt0)


def refine_increments(gens, n_paths, n_steps0, m, dt0):
    """Draw the next ``n_paths`` paths' increments from the level generators ``gens`` (level
    0's, then one per refinement). The draws are path-major, so successive slices of paths
    continue the same streams: slicing does not change any value."""
    dW = gens[0].standard_normal((n_paths, n_steps0, 2, m, m))
    dW *= math.sqrt(dt0)
    for j in range(1, len(gens)):
        h = dt0 / 2 ** j
        xi = gens[j].standard_normal(dW.shape)
        xi *= math.sqrt(h / 2.0)
        half = 0.5 * dW
        fine = np.empty((n_paths, 2 * dW.shape[1], 2, m, m))
        fine[:, 0::2] = half + xi
        fine[:, 1::2] = half - xi
        dW = fine
    return dW


def check_coupled(model, m, method):
    """Raise unless ``method`` has a supplied-increment kernel (every mask has one)."""
    if method not in COUPLED_KERNELS:
        raise CovsdeInputError(f"method must be one of {', '.join(COUPLED_KERNELS)}, got "
                               f"{method!r}", "method")


def mask_rows(model, m, seed):
    """The row lists of the realised mask of ``model`` with m tokens at ``seed`` (the same mask
    :func:`sde.simulate` realises), or None for the complete mask."""
    mask = masks.run_matrix(model, m, seed)
    if mask is None or masks.is_complete_matrix(mask):
        return None
    return masks.row_lists(mask)


def run_level(model, V0, *, t_end, dt0, level, n_paths, seed, method="spd", bound=1e4,
              max_slice_values=MAX_SLICE_VALUES):
    """Integrate ``n_paths`` coupled paths at level ``level``; return (status, death_time).

    status (n_paths,) int8: 0 alive at ``t_end``, 1 left the PD cone (Euler only), 2 blew up;
    death_time (n_paths,) float, +inf for paths alive at ``t_end``. Each RNG block is run in
    slices of paths holding at most ``max_slice_values`` increments (memory only: the result
    does not depend on it). Inputs are assumed validated
    (:func:`sde.blowup.blowup_probability` validates them).
    """
    kernel = COUPLED_KERNELS[method]
    coef = model.limit()
    m = V0.shape[0]
    rows = mask_rows(model, m, seed)
    n_steps0 = int(round(t_end / dt0))
    dt = dt0 / 2 ** level
    status = np.zeros(n_paths, dtype=np.int8)
    death = np.full(n_paths, np.inf)
    per_path = n_steps0 * 2 ** level * 2 * m * m
    step = max(1, min(RNG_BLOCK, max_slice_values // per_path))
    for c, b0 in enumerate(range(0, n_paths, RNG_BLOCK)):
        b1 = min(n_paths, b0 + RNG_BLOCK)
        gens = [block_generator(seed, c, j) for j in range(level + 1)]
        for p0 in range(b0, b1, step):
            p1 = min(b1, p0 + step)
            dW = refine_increments(gens, p1 - p0, n_steps0, m, dt0)
            out_V = np.full((p1 - p0, dW.shape[1] + 1, m, m), np.nan)
            kernel(V0, coef, dt, dW, bound, out_V, status[p0:p1], death[p0:p1], rows=rows)
    return status, death


def paired_difference_ci(first, second, level=0.95):
    """Estimate and interval of P(A) − P(B) from paired indicators ``first`` (A) and ``second`` (B).

    first, second: boolean arrays (n,), one pair per path. Returns ``(difference, low,
    high)``: the difference of the two fractions and Newcombe's hybrid score interval for a
    paired difference of proportions (Newcombe 1998, Stat. Med. 17:2635, method 10): the
    Wilson intervals of the two fractions combined with the correlation φ of the pairs. Its
    width is set by the discordant pairs (A without B, B without A); with none it is about
    ±z²/n.
    """
    first = np.asarray(first, dtype=bool)
    second = np.asarray(second, dtype=bool)
    n = first.size
    if n == 0 or second.size != n:
        raise ValueError("first and second must be non-empty and of equal length")
    a = int(np.count_nonzero(first & second))
    b = int(np.count_nonzero(first & ~second))
    c = int(np.count_nonzero(~first & second))
    return paired_difference_ci_counts(a, b, c, n - a - b - c, level)


def paired_difference_ci_counts(a, b, c, d, level=0.95):
    """:func:`paired_difference_ci` from the 2×2 counts: a = both, b = first only,
    c = second only, d = neither."""
    n = a + b + c + d
    z = stats.norm.ppf(0.5 + level / 2)
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins > 0 else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)
                          + (u2 - p2) ** 2))
    eps = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2)
                        + (p2 - l2) ** 2))
    diff = p1 - p2
    return diff, max(-1.0, diff - delta), min(1.0, diff + eps)


def wilson(k, n, z):
    """Wilson score interval (low, high) of a proportion k/n at normal quantile z."""
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


__all__ = ["COUPLED_KERNELS", "MAX_SLICE_VALUES", "block_generator", "refine_increments",
           "coupled_increments", "check_coupled", "mask_rows", "run_level", "paired_difference_ci",
           "paired_difference_ci_counts", "wilson"]
