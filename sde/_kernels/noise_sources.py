"""The two noise sources of a step: the path's inlined PCG64 stream, or supplied normals.

Per step, in the package's order, unit normals g: the m(m+1)/2 entries of ``Z`` (row-major
upper triangle, diagonal first in each row), then, when the model has attention noise, the
m² entries of ``G'`` row-major. They are scaled the same way from either source:
``Z_aa = sqrt(2 dt) g``, ``Z_ab = Z_ba = sqrt(dt) g``, ``G'_ab = sqrt(dt) g``. Supplied
normals are an array (paths, steps, :func:`normals_per_step`) holding exactly the stream's
draws of each step (:func:`sde._kernels.integrate_normals`); Brownian increments G, G' are
turned into such normals by the Python wrapper :func:`sde._kernels.integrate_supplied`.
Both write lane ``l`` of (m, m, lanes) arrays; the per-path kernels pass one-lane views.
"""
from numba import njit

from .. import pcg64


@njit(cache=True, inline="always")
def draw_lane(rng, k, l, sq, sq2, has_att, Z, Gp):
    """One step's noise for lane ``l`` from PCG64 state row ``k`` of ``rng`` (blocks, 4)
    (:mod:`sde.pcg64`: the Generator's stream). The state stays in registers for the step's
    draws and is stored back once."""
    m = Z.shape[0]
    hi, lo, inc_hi, inc_lo = rng[k, 0], rng[k, 1], rng[k, 2], rng[k, 3]
    # the diagonal is the first entry of each row's loop: one draw site for Z, one for G'
    # (each an inlined copy of the ziggurat, most of this function's compile time)
    for a in range(m):
        for b in range(a, m):
            x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
            z = (sq2 if b == a else sq) * x
            Z[a, b, l] = z
            Z[b, a, l] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
                Gp[a, b, l] = sq * x
    rng[k, 0] = hi
    rng[k, 1] = lo


def normals_per_step(m, has_att):
    """Unit normals one step draws: m(m+1)/2 for Z, plus m² for G' with attention noise."""
    return m * (m + 1) // 2 + (m * m if has_att else 0)


@njit(cache=True, inline="always")
def supplied_lane(normals, p, s, l, sq, sq2, has_att, Z, Gp):
    """:func:`draw_lane` with the step's normals read from ``normals[p, s]`` (step s, 0-based,
    of path p; the stream's order) instead of drawn: the same scaling, entry by entry."""
    m = Z.shape[0]
    g = normals[p, s]
    i = 0
    for a in range(m):
        x = g[i]
        i += 1
        Z[a, a, l] = sq2 * x
        for b in range(a + 1, m):
            x = g[i]
            i += 1
            z = sq * x
            Z[a, b, l] = z
            Z[b, a, l] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                x = g[i]
                i += 1
                Gp[a, b, l] = sq * x
