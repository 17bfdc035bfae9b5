"""Private numba kernels: Euler–Maruyama and RK4 path loops over preallocated output.

Pure functions: inputs in, preallocated output filled, a status code and a death time
per path. The public wrapper is :func:`sde.simulate.simulate`.

Status codes (also in :mod:`sde.schema`): 0 alive, 1 left the PD cone (Cholesky of the
new state failed), 2 blew up (non-finite entry or ``|V_ab| > bound``).

Random numbers, per step, from the path's block Generator, in this order: the
m(m+1)/2 entries of ``Z`` (row-major upper triangle, diagonal first in each row;
diagonal N(0, 2), off-diagonal N(0, 1)), then, when the model has attention, the m²
entries of ``G'`` row-major. All are scaled by sqrt(dt).
"""
import math

import numpy as np
from numba import njit, prange

from .coefficients import cholesky_into, drift_into, noise_into

ALIVE, LEFT_CONE, BLEW_UP = 0, 1, 2


@njit(cache=True, inline="always")
def _check_state(Vn, bound, Ln):
    """Status of a new state: 2 if non-finite or above bound, 1 if not PD, else 0 (Ln filled)."""
    m = Vn.shape[0]
    for a in range(m):
        for b in range(m):
            x = Vn[a, b]
            if not (abs(x) <= bound):  # catches NaN and inf too
                return BLEW_UP
    if not cholesky_into(Vn, Ln):
        return LEFT_CONE
    return ALIVE


@njit(cache=True)
def _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln):
    """One Euler–Maruyama step ``V → Vn`` (and its factor ``Ln``); returns a status code.

    ``Z`` and ``Gp`` are the step's noise increments (already scaled by sqrt(dt)).
    """
    m = V.shape[0]
    drift_into(V, coef, bdrift)
    noise_into(L, Z, Gp, coef, scratch, Vn)
    for a in range(m):
        for b in range(a + 1):
            x = 0.5 * ((Vn[a, b] + bdrift[a, b] * dt) + (Vn[b, a] + bdrift[b, a] * dt)) + V[a, b]
            Vn[a, b] = x
            Vn[b, a] = x
    return _check_state(Vn, bound, Ln)


@njit(cache=True, inline="always")
def draw_increments(gen, sq, sq2, has_att, Z, Gp):
    """One step's noise from ``gen`` in the package's order (module docstring): Z, then G'."""
    m = Z.shape[0]
    for a in range(m):
        Z[a, a] = sq2 * gen.standard_normal()
        for b in range(a + 1, m):
            z = sq * gen.standard_normal()
            Z[a, b] = z
            Z[b, a] = z
    if has_att:
        for a in range(m):
            for b in range(m):
                Gp[a, b] = sq * gen.standard_normal()


@njit(cache=True, inline="always")
def supplied_increments(dW, p, s, Z, Gp):
    """Z = (G + Gᵀ)/sqrt 2 and G' of step ``s`` of path ``p`` from supplied increments."""
    m = Z.shape[0]
    r2 = 1.0 / math.sqrt(2.0)
    for a in range(m):
        for b in range(m):
            Z[a, b] = r2 * (dW[p, s, 0, a, b] + dW[p, s, 0, b, a])
            Gp[a, b] = dW[p, s, 1, a, b]


@njit(cache=True)
def _workspace(m):
    """Per-path work arrays of one EM integration: V, L, Vn, Ln, Z, G' (zeroed), b, scratch."""
    return (np.empty((m, m)), np.empty((m, m)), np.empty((m, m)), np.empty((m, m)),
            np.empty((m, m)), np.zeros((m, m)), np.empty((m, m)), np.empty((3, m, m)))


@njit(cache=True, parallel=True)
def simulate_blocks(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                    bound, out_V, out_status, out_death):
    """Euler–Maruyama over RNG blocks of paths, in parallel over blocks.

    gens: tuple of ``numpy.random.Generator``, one per block; block k owns local paths
    ``block_start[k] : block_start[k] + block_len[k]``. ``out_V`` (paths, n_save, m, m)
    must be NaN-filled, ``out_status`` zeros, ``out_death`` +inf.
    """
    m = V0.shape[0]
    has_att = coef.att_noise != 0.0
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    n_save = save_steps.shape[0]
    for k in prange(len(gens)):
        gen = gens[k]
        V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
        for p in range(block_start[k], block_start[k] + block_len[k]):
            V[:, :] = V0
            cholesky_into(V, L)
            j = 0
            if save_steps[0] == 0:
                out_V[p, 0] = V
                j = 1
            for s in range(1, n_steps + 1):
                draw_increments(gen, sq, sq2, has_att, Z, Gp)
                st = _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln)
                if st != ALIVE:
                    out_status[p] = st
                    out_death[p] = s * dt
                    break
                V, Vn = Vn, V
                L, Ln = Ln, L
                if j < n_save and s == save_steps[j]:
                    out_V[p, j] = V
                    j += 1


@njit(cache=True)
def integrate_supplied(V0, coef, dt, dW, bound, out_V, out_status, out_death):
    """Euler–Maruyama driven by supplied increments (reference cross-checks).

    dW: (paths, n_steps, 2, m, m), ``dW[p, s, 0]`` = G and ``dW[p, s, 1]`` = G' of the
    step, each entry ~ N(0, dt); the symmetric noise is ``Z = (G + Gᵀ)/sqrt 2``.
    out_V: (paths, n_steps + 1, m, m), NaN-filled; every step is saved.
    Shares :func:`_em_step` with :func:`simulate_blocks`.
    """
    n_paths, n_steps = dW.shape[0], dW.shape[1]
    m = V0.shape[0]
    V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
    for p in range(n_paths):
        V[:, :] = V0
        cholesky_into(V, L)
        out_V[p, 0] = V
        for s in range(n_steps):
            supplied_increments(dW, p, s, Z, Gp)
            st = _em_step(V, L, Z, Gp, coef, dt, bound, bdrift, scratch, Vn, Ln)
            if st != ALIVE:
                out_status[p] = st
                out_death[p] = (s + 1) * dt
                break
            V, Vn = Vn, V
            L, Ln = Ln, L
            out_V[p, s + 1] = V


@njit(cache=True)
def integrate_ode(V0, coef, dt, n_steps, save_steps, bound, out_V):
    """Classical RK4 on ``dV/dt = b(V)`` (the width-first limit); returns (status, death time).

    out_V: (n_save, m, m), NaN-filled. The same death rules as the SDE apply (a cubic
    drift can blow up in finite time).
    """
    m = V0.shape[0]
    V = V0.copy()
    L = np.empty((m, m))
    k1 = np.empty((m, m))
    k2 = np.empty((m, m))
    k3 = np.empty((m, m))
    k4 = np.empty((m, m))
    n_save = save_steps.shape[0]
    j = 0
    if save_steps[0] == 0:
        out_V[0] = V
        j = 1
    for s in range(1, n_steps + 1):
        drift_into(V, coef, k1)
        drift_into(V + 0.5 * dt * k1, coef, k2)
        drift_into(V + 0.5 * dt * k2, coef, k3)
        drift_into(V + dt * k3, coef, k4)
        Vn = V + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        Vn = 0.5 * (Vn + Vn.T)
        st = _check_state(Vn, bound, L)
        if st != ALIVE:
            return st, s * dt
        V = Vn
        if j < n_save and s == save_steps[j]:
            out_V[j] = V
            j += 1
    return ALIVE, np.inf
