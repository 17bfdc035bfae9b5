"""Width-first limit (docs/theory.md §3.4): ``simulate(..., method="ode")`` vs scipy's solve_ivp.

The reference is ``scipy.integrate.solve_ivp`` (DOP853, rtol = 1e-11, atol = 1e-13) on
``dV/dt = model.drift(V)`` from the same random SPD V0 (m = 5). The package's classical RK4
at dt = 0.01 has a global error O(dt⁴): measured 4e-14–5e-9 relative here, so the
tolerance ``RTOL = 1e-6`` leaves a ≥ 200× margin, while a 15 % error in γ (or τ0, c₋, a)
moves the trajectory by 2.2e-2–6.5e-1 relative (measured), ≥ 2·10⁴× the tolerance; the
test requires ≥ 10³×. The observed order of the RK4 kernel (errors at dt = 0.04, 0.02 on
the MLP models, where the error is far above the reference's) is 4.0–4.1 and is checked to be
4 ± 0.5.
"""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from conftest import random_spd
from sde import ShapedAttention, ShapedBlock, ShapedMLP, ShapedMLPResidual, simulate

M = 5
T_END = 1.0
DT = 0.01
RTOL = 1e-6

MODELS = {
    "attention": ShapedAttention(0.5, 1.0),
    "attention-strong": ShapedAttention(0.8, 0.6, heads=2),
    "mlp-relu": ShapedMLP(0.3, -1.2),
    "mlp-tanh": ShapedMLP(activation="tanh", a=0.8),
    "mlp-res": ShapedMLPResidual(0.6, 0.2, -0.9),
    "block": ShapedBlock(0.5, 1.0, 0.1, -1.1, heads=2),
}
#: the same models with one coefficient off by 15 %
PERTURBED = {
    "attention": ShapedAttention(0.5 * 1.15, 1.0),
    "attention-strong": ShapedAttention(0.8, 0.6 * 1.15, heads=2),
    "mlp-relu": ShapedMLP(0.3, -1.2 * 1.15),
    "mlp-tanh": ShapedMLP(activation="tanh", a=0.8 * 1.15),
    "mlp-res": ShapedMLPResidual(0.6 * 1.15, 0.2, -0.9),
    "block": ShapedBlock(0.5 * 1.15, 1.0, 0.1, -1.1, heads=2),
}


@pytest.fixture(scope="module")
def V0():
    return random_spd(np.random.default_rng(31), M, cond=4.0)


def _reference(model, V0, times):
    def rhs(t, y):
        return model.drift(y.reshape(M, M)).ravel()

    sol = solve_ivp(rhs, (0.0, times[-1]), V0.ravel(), method="DOP853", t_eval=times,
                    rtol=1e-11, atol=1e-13)
    assert sol.success
    return sol.y.T.reshape(len(times), M, M)


def _ode(model, V0, dt=DT):
    ds = simulate(model, V0, t_end=T_END, dt=dt, seed=0, method="ode")
    assert int(ds["status"].values[0]) == 0, "ODE path died: choose milder parameters"
    return ds["time"].values, ds["V"].values[0]


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("name", list(MODELS))
def test_rk4_matches_solve_ivp(V0, name):
    model = MODELS[name]
    times, V = _ode(model, V0)
    ref = _reference(model, V0, times)
    assert np.all(np.isfinite(V))
    err = _rel_err(V, ref)
    assert err < RTOL, f"RK4 vs solve_ivp: relative error {err:.2e}"
    # the trajectory actually moves (so the comparison is not vacuous)
    assert _rel_err(V[-1], V0) > 1e-2
    # negative control: the reference with a 15 % wrong coefficient is far outside RTOL
    wrong = _reference(PERTURBED[name], V0, times)
    assert _rel_err(V, wrong) > 1e3 * RTOL


@pytest.mark.parametrize("name", ["mlp-relu", "mlp-tanh"])
def test_rk4_observed_order(V0, name):
    """Global error ratio between dt = 0.04 and 0.02 is 2⁴ (order 4 ± 0.5)."""
    model = MODELS[name]
    errs = []
    for dt in (0.04, 0.02):
        times, V = _ode(model, V0, dt)
        errs.append(_rel_err(V[-1], _reference(model, V0, times)[-1]))
    order = np.log2(errs[0] / errs[1])
    assert 3.5 < order < 4.5, (errs, order)


def test_ode_is_drift_only(V0):
    """The ODE has no noise: two seeds give identical output."""
    model = MODELS["block"]
    a = simulate(model, V0, t_end=T_END, dt=DT, seed=1, method="ode")["V"].values
    b = simulate(model, V0, t_end=T_END, dt=DT, seed=2, method="ode")["V"].values
    np.testing.assert_array_equal(a, b)
