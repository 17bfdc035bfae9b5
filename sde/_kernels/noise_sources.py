"""The two noise sources of a step: the path's inlined PCG64 stream, or supplied increments.

Per step, in the package's order: the m(m+1)/2 entries of ``Z`` (row-major upper triangle,
diagonal first in each row; diagonal N(0, 2), off-diagonal N(0, 1)), then, when the model
has attention noise, the m² entries of ``G'`` row-major; all scaled by sqrt(dt). Supplied
increments give G and G' per step instead, and ``Z = (G + Gᵀ)/sqrt 2`` has the same law.
Both write lane ``l`` of (m, m, lanes) arrays; the per-path kernels pass one-lane views.
"""
import math

from numba import njit

from .. import pcg64


@njit(cache=True, inline="always")
def draw_lane(rng, k, l, sq, sq2, has_att, Z, Gp):
    """One step's noise for lane ``l`` from PCG64 state row ``k`` of ``rng`` (blocks, 4)
    (:mod:`sde.pcg64`: the Generator's stream). The state stays in registers for the step's
    draws and is stored back once."""
    m = Z.shape[0]
    hi, lo, inc_hi, inc_lo = rng[k, 0], rng[k, 1], rng[k, 2], rng[k, 3]
    for a in range(m):
        x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
        Z[a, a, l] = sq2 * x
        for b in range(a + 1, m):
            x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
            z = sq * x
            Z[a, b, l] = z
            Z[b, a, l] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
                Gp[a, b, l] = sq * x
    rng[k, 0] = hi
    rng[k, 1] = lo


@njit(cache=True, inline="always")
def supplied_lane(dW, p, s, l, Z, Gp):
    """Lane ``l``'s ``Z = (G + Gᵀ)/sqrt 2`` and ``G'`` of step ``s`` (0-based) of path ``p``
    from supplied increments ``dW`` (paths, steps, 2, m, m) (G = ``dW[p, s, 0]``,
    G' = ``dW[p, s, 1]``, entries ~ N(0, dt))."""
    m = Z.shape[0]
    r2 = 1.0 / math.sqrt(2.0)
    for a in range(m):
        for b in range(m):
            Z[a, b, l] = r2 * (dW[p, s, 0, a, b] + dW[p, s, 0, b, a])
            Gp[a, b, l] = dW[p, s, 1, a, b]
