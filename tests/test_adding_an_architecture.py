"""docs/developing.md's "Adding an architecture" example, executed verbatim and put through the family.

The code block between the ``<!-- example: adding-an-architecture -->`` markers of
docs/developing.md defines and registers a linear residual sub-layer ``X' = λX + γXW/sqrt(n)``.
This test runs it, then checks what that section promises — with the generic family's
statistics:

* reduced ≡ literal in one layer (KS on every V_ab and ρ_ab, Bonferroni at 1e-3) at n = 16,
  2·10⁴ draws each; control: γ +15 % in the reduced sampler is rejected;
* one-layer diffusion n Cov(V' − V) against the limit Σ(V) = γ²(2 − γ²) Σ_lin (z-scores,
  Bonferroni over 21 entries) at n = 1000, 4·10⁴ draws; control: a_lin +15 % is rejected,
  and the resolution is asserted below the control's effect;
* ``simulate``, ``sample`` (both samplers), ``Serial`` and the CLI accept it.

The registration is undone afterwards, so the other tests see the built-in registry.
"""
import pathlib
import re

import numpy as np
import pytest

import finite.layers as fl
from finite import sample
from sde import ShapedAttention, simulate
from sde.models import MODELS, Serial
from test_finite_coefficients import (PAIRS, V_DIFF, _alin_scaled, cov_estimate, diffusion_z,
                                      resolution, sigma6, z_crit)
from test_finite_exact import V0, ks_family

DEVELOPING = pathlib.Path(__file__).resolve().parents[1] / "docs" / "developing.md"


def documented_example():
    text = DEVELOPING.read_text()
    m = re.search(r"<!-- example: adding-an-architecture -->\s*```python\n(.*?)```", text,
                  re.S)
    assert m, "docs/developing.md has no adding-an-architecture example"
    return m.group(1)


@pytest.fixture(scope="module")
def linear_residual():
    namespace = {"__name__": "developing_example"}
    exec(compile(documented_example(), str(DEVELOPING), "exec"), namespace)
    cls = namespace["LinearResidual"]
    try:
        yield cls
    finally:
        MODELS.pop(cls.arch, None)
        fl._REGISTRY.pop(cls, None)


def test_registered(linear_residual):
    assert MODELS["linear-res"] is linear_residual
    assert fl.finite_class(linear_residual(0.5)).__name__ == "FiniteLinearResidual"


def test_reduced_equals_literal_with_control(linear_residual):
    model = linear_residual(0.6)
    kw = dict(width=16, n_paths=20_000, depth=1)
    lit = sample(model, V0, seed=1, sampler="literal", threads=1, **kw)
    red = sample(model, V0, seed=2, **kw)
    pmin, threshold, ps = ks_family(lit, red)
    assert pmin >= threshold, f"reduced ≠ literal: {ps}"
    bad = sample(model.replace(gamma=0.69), V0, seed=3, **kw)
    pmin_bad, threshold, _ = ks_family(lit, bad)
    assert pmin_bad < threshold / 10, f"γ +15 % control not rejected (p = {pmin_bad:.3g})"


def test_one_layer_diffusion_with_control(linear_residual):
    model, width = linear_residual(0.8), 1000
    ds = sample(model, V_DIFF, width=width, n_paths=40_000, seed=41, depth=1, progress=False)
    est, se = cov_estimate(ds.V.values[:, -1], V_DIFF, width)
    sig = sigma6(model, V_DIFF)
    z = diffusion_z(est, se, sig)
    assert np.abs(z).max() < z_crit(21), f"n Cov ≠ Σ: z = {z}"
    bad = sigma6(model, V_DIFF, _alin_scaled(model, 1.15))
    assert resolution(se, (sig - bad)[PAIRS]) < 1.0
    assert np.abs(diffusion_z(est, se, bad)).max() > z_crit(21)


def test_drift_is_zero_in_the_limit(linear_residual):
    """The limit drift is exactly 0, and the one-layer mean change n(E[V'] − V) is 0 within
    its standard error (an exact identity of the layer: E[V'] = (λ² + γ²) V)."""
    model = linear_residual(0.8)
    np.testing.assert_array_equal(model.drift(V_DIFF), 0.0)
    ds = sample(model, V_DIFF, width=1000, n_paths=40_000, seed=42, depth=1, progress=False)
    D = 1000 * (ds.V.values[:, -1] - V_DIFF)
    z = D.mean(axis=0) / (D.std(axis=0, ddof=1) / np.sqrt(len(D)))
    assert np.abs(z).max() < z_crit(6)
    # control: the same statistic sees a 1 % change of the input scale
    z_bad = (D.mean(axis=0) + 1000 * 0.01 * V_DIFF) / (D.std(axis=0, ddof=1) / np.sqrt(len(D)))
    assert np.abs(z_bad).max() > z_crit(6)


def test_runs_everywhere(linear_residual, tmp_path, capsys):
    from compare.cli import main

    model = linear_residual(0.5)
    ds = simulate(model, V0, t_end=0.2, dt=0.02, n_paths=50, seed=1)
    assert ds.attrs["arch"] == "linear-res" and ds.V.shape[0] == 50
    for sampler in ("reduced", "literal"):
        ds = sample(model, V0, width=8, depth=3, n_paths=10, seed=1, sampler=sampler)
        assert not ds.exploded.any()
    both = Serial(model, ShapedAttention(0.5, 1.0))
    ds = sample(both, V0, width=8, depth=2, n_paths=10, seed=1)
    assert ds.attrs["arch"] == "serial"
    out = tmp_path / "lin.nc"
    rc = main(["simulate", "--arch", "linear-res", "--gamma", "0.5", "--tokens", "3",
               "--rho0", "0.2", "--t-end", "0.1", "--dt", "0.05", "--paths", "10", "--seed",
               "0", "--out", str(out)])
    assert rc == 0 and out.exists()
    rc = main(["simulate", "--arch", "linear-res", "--gamma", "0.5", "--tau0", "1",
               "--tokens", "3", "--rho0", "0.2", "--t-end", "0.1", "--dt", "0.05",
               "--paths", "10", "--seed", "0", "--out", str(tmp_path / "x.nc")])
    assert rc == 2 and "--tau0 does not apply to --arch linear-res" in capsys.readouterr().err
