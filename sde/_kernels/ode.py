"""Classical RK4 on ``dV/dt = b(V)`` (``method="ode"``, the width-first limit), for the
complete mask and for a mask's row lists alike."""
import numpy as np
from numba import njit

from ..coefficients import drift_into
from ..masked_coefficients import masked_drift_work
from .state import ALIVE, check_state


@njit(cache=True, inline="always")
def _drift(V, coef, masked, idx, cnt, out, work):
    if masked:
        masked_drift_work(V, coef, idx, cnt, out, work)
    else:
        drift_into(V, coef, out)


@njit(cache=True)
def integrate_ode(V0, coef, masked, idx, cnt, dt, n_steps, save_steps, bound, out_V):
    """RK4 from V0; returns (status, death time). ``masked``: the drift of the mask with row
    lists ``idx``, ``cnt`` (:func:`sde.masks.row_lists`), else the complete-mask drift.

    out_V: (n_save, m, m), NaN-filled. The same death rules as the SDE apply (a cubic drift
    can blow up in finite time).
    """
    m = V0.shape[0]
    V = V0.copy()
    L = np.empty((m, m))
    k1 = np.empty((m, m))
    k2 = np.empty((m, m))
    k3 = np.empty((m, m))
    k4 = np.empty((m, m))
    work = np.empty((5, m, m))    # the masked drift's work arrays, once
    n_save = save_steps.shape[0]
    j = 0
    if save_steps[0] == 0:
        out_V[0] = V
        j = 1
    for s in range(1, n_steps + 1):
        _drift(V, coef, masked, idx, cnt, k1, work)
        _drift(V + 0.5 * dt * k1, coef, masked, idx, cnt, k2, work)
        _drift(V + 0.5 * dt * k2, coef, masked, idx, cnt, k3, work)
        _drift(V + dt * k3, coef, masked, idx, cnt, k4, work)
        Vn = V + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        Vn = 0.5 * (Vn + Vn.T)
        st = check_state(Vn, bound, L)
        if st != ALIVE:
            return st, s * dt
        V = Vn
        if j < n_save and s == save_steps[j]:
            out_V[j] = V
            j += 1
    return ALIVE, np.inf
