"""Private numba kernels of the masked SDE (docs/theory.md §3.5): Euler–Maruyama and RK4.

The same conventions as :mod:`sde._kernels` (the complete-mask kernels): status codes
0 alive, 1 left the PD cone, 2 blew up; paths in RNG blocks, one ``Generator`` per block
(drawn by the inlined PCG64 of :mod:`sde.pcg64`), ``prange`` over blocks; per step the
m(m+1)/2 entries of ``Z`` (row-major upper triangle, diagonal first in each row; diagonal
N(0, 2), off-diagonal N(0, 1)), then, when the model has attention noise, the m² entries of
``G'`` row-major, all scaled by sqrt(dt). The mask enters as its row lists ``(idx, cnt)``
(:func:`sde.masks.row_lists`).

Kept apart from :mod:`sde._kernels` on purpose: the complete-mask kernels, and so every
complete-mask result, are untouched by the mask.
"""
import math

import numpy as np
from numba import njit, prange

from . import pcg64
from ._kernels import draw_lane, used_blocks
from .coefficients import cholesky_into
from .masked_coefficients import masked_drift_work, masked_noise_into

ALIVE, LEFT_CONE, BLEW_UP = 0, 1, 2


@njit(cache=True, inline="always")
def _check_state(Vn, bound, Ln):
    m = Vn.shape[0]
    for a in range(m):
        for b in range(m):
            if not (abs(Vn[a, b]) <= bound):  # catches NaN and inf too
                return BLEW_UP
    if not cholesky_into(Vn, Ln):
        return LEFT_CONE
    return ALIVE


@njit(cache=True)
def _em_step(V, L, Z, Gp, coef, idx, cnt, dt, bound, bdrift, scratch, Vn, Ln):
    """One masked Euler–Maruyama step ``V → Vn`` (and its factor ``Ln``); returns a status.

    ``scratch`` (8, m, m): the noise's work arrays, then the drift's (no allocation per step)."""
    m = V.shape[0]
    masked_drift_work(V, coef, idx, cnt, bdrift, scratch[3:])
    masked_noise_into(L, Z, Gp, coef, idx, cnt, scratch[:3], Vn)
    for a in range(m):
        for b in range(a + 1):
            x = 0.5 * ((Vn[a, b] + bdrift[a, b] * dt) + (Vn[b, a] + bdrift[b, a] * dt)) + V[a, b]
            Vn[a, b] = x
            Vn[b, a] = x
    return _check_state(Vn, bound, Ln)


@njit(cache=True)
def _workspace(m):
    return (np.empty((m, m)), np.empty((m, m)), np.empty((m, m)), np.empty((m, m)),
            np.empty((m, m)), np.zeros((m, m)), np.empty((m, m)), np.empty((8, m, m)))


def simulate_blocks(gens, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                    bound, out_V, out_status, out_death, idx, cnt):
    """Masked Euler–Maruyama over RNG blocks (arguments as :func:`sde._kernels.simulate_blocks`,
    plus the mask's row lists ``idx``, ``cnt``).

    Draws the Generators' streams with the inlined PCG64 (:mod:`sde.pcg64`, the same
    draws); the advanced states are written back to ``gens``.
    """
    rng = pcg64.states(gens)
    _simulate_blocks(rng, block_start, block_len, V0, coef, dt, n_steps, save_steps, bound,
                     out_V, out_status, out_death, idx, cnt)
    pcg64.write_back(gens, rng)


@njit(cache=True, parallel=True)
def _simulate_blocks(rng, block_start, block_len, V0, coef, dt, n_steps, save_steps,
                     bound, out_V, out_status, out_death, idx, cnt):
    m = V0.shape[0]
    has_att = coef.att_noise != 0.0
    sq = math.sqrt(dt)
    sq2 = math.sqrt(2.0) * sq
    n_save = save_steps.shape[0]
    for k in prange(used_blocks(block_len)):
        V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
        Z1 = Z.reshape((m, m, 1))    # one-lane views for the shared draw
        Gp1 = Gp.reshape((m, m, 1))
        for p in range(block_start[k], block_start[k] + block_len[k]):
            V[:, :] = V0
            cholesky_into(V, L)
            j = 0
            if save_steps[0] == 0:
                out_V[p, 0] = V
                j = 1
            for s in range(1, n_steps + 1):
                draw_lane(rng, k, 0, sq, sq2, has_att, Z1, Gp1)
                st = _em_step(V, L, Z, Gp, coef, idx, cnt, dt, bound, bdrift, scratch, Vn, Ln)
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
def integrate_supplied(V0, coef, idx, cnt, dt, dW, bound, out_V, out_status, out_death):
    """Masked Euler–Maruyama driven by supplied increments (reference cross-checks).

    dW: (paths, n_steps, 2, m, m): G and G' of each step, entries ~ N(0, dt);
    ``Z = (G + Gᵀ)/sqrt 2``. out_V: (paths, n_steps + 1, m, m), NaN-filled.
    """
    n_paths, n_steps = dW.shape[0], dW.shape[1]
    m = V0.shape[0]
    r2 = 1.0 / math.sqrt(2.0)
    V, L, Vn, Ln, Z, Gp, bdrift, scratch = _workspace(m)
    for p in range(n_paths):
        V[:, :] = V0
        cholesky_into(V, L)
        out_V[p, 0] = V
        for s in range(n_steps):
            for a in range(m):
                for b in range(m):
                    Z[a, b] = r2 * (dW[p, s, 0, a, b] + dW[p, s, 0, b, a])
                    Gp[a, b] = dW[p, s, 1, a, b]
            st = _em_step(V, L, Z, Gp, coef, idx, cnt, dt, bound, bdrift, scratch, Vn, Ln)
            if st != ALIVE:
                out_status[p] = st
                out_death[p] = (s + 1) * dt
                break
            V, Vn = Vn, V
            L, Ln = Ln, L
            out_V[p, s + 1] = V


@njit(cache=True)
def integrate_ode(V0, coef, idx, cnt, dt, n_steps, save_steps, bound, out_V):
    """Classical RK4 on ``dV/dt = b_M(V)``; returns (status, death time)."""
    m = V0.shape[0]
    V = V0.copy()
    L = np.empty((m, m))
    k1 = np.empty((m, m))
    k2 = np.empty((m, m))
    k3 = np.empty((m, m))
    k4 = np.empty((m, m))
    work = np.empty((5, m, m))    # the drift's work arrays, once (as in _em_step)
    n_save = save_steps.shape[0]
    j = 0
    if save_steps[0] == 0:
        out_V[0] = V
        j = 1
    for s in range(1, n_steps + 1):
        masked_drift_work(V, coef, idx, cnt, k1, work)
        masked_drift_work(V + 0.5 * dt * k1, coef, idx, cnt, k2, work)
        masked_drift_work(V + 0.5 * dt * k2, coef, idx, cnt, k3, work)
        masked_drift_work(V + dt * k3, coef, idx, cnt, k4, work)
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
