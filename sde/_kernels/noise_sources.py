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
def draw_pair(rng, k0, k1, act0, act1, l, sq, sq2, has_att, Z, Gp):
    """:func:`draw_lane` for lanes ``l`` and ``l + 1`` from state rows ``k0`` and ``k1``, their
    draws interleaved: the two streams are independent, so each one's draws run while the
    other's wait on their own chain (the same draws per lane, in the same order). A lane
    whose flag ``act0`` / ``act1`` is False draws from a copy of the other lane's state,
    never stored back (its row may not exist); at least one flag must be True."""
    m = Z.shape[0]
    r0 = k0 if act0 else k1
    r1 = k1 if act1 else k0
    h0, o0, ih0, io0 = rng[r0, 0], rng[r0, 1], rng[r0, 2], rng[r0, 3]
    h1, o1, ih1, io1 = rng[r1, 0], rng[r1, 1], rng[r1, 2], rng[r1, 3]
    for a in range(m):
        x0, h0, o0 = pcg64.standard_normal(h0, o0, ih0, io0)
        x1, h1, o1 = pcg64.standard_normal(h1, o1, ih1, io1)
        Z[a, a, l] = sq2 * x0
        Z[a, a, l + 1] = sq2 * x1
        for b in range(a + 1, m):
            x0, h0, o0 = pcg64.standard_normal(h0, o0, ih0, io0)
            x1, h1, o1 = pcg64.standard_normal(h1, o1, ih1, io1)
            z0 = sq * x0
            z1 = sq * x1
            Z[a, b, l] = z0
            Z[a, b, l + 1] = z1
            Z[b, a, l] = z0
            Z[b, a, l + 1] = z1
    if has_att:
        for a in range(m):
            for b in range(m):
                x0, h0, o0 = pcg64.standard_normal(h0, o0, ih0, io0)
                x1, h1, o1 = pcg64.standard_normal(h1, o1, ih1, io1)
                Gp[a, b, l] = sq * x0
                Gp[a, b, l + 1] = sq * x1
    if act0:
        rng[k0, 0] = h0
        rng[k0, 1] = o0
    if act1:
        rng[k1, 0] = h1
        rng[k1, 1] = o1


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
