"""Exact weak error of exp(−V_00) for the Li–Nica–Roy MLP (compare.lnr_diagonal).

- The SDE side (geometric Brownian motion) by Mellin–Barnes equals a 200-node
  Gauss–Hermite quadrature of the lognormal law to 1e-10.
- The network side equals a Monte Carlo mean of the exact reduced sampler (2·10⁵ paths,
  width 8, t = 0.5 and 1; Bonferroni over the two times); the negative control, the exact
  value of a network 20 % wider run for the same number of layers, is rejected by the same
  sample.
- Asymptotics (docs/theory.md §6.8): the local rate −d log e / d log n tends to 1 (within
  0.02 at n = 256–512) for symmetric and default shaping, and is well below 1 at n = 8–16
  for symmetric shaping (the pre-asymptotic term).
"""
import math

import numpy as np
import pytest
import scipy.stats

import finite
import sde
from compare import lnr_diagonal as lnr
from sde.errors import CovsdeInputError


@pytest.mark.parametrize("t", [0.5, 1.0])
def test_sde_side_is_the_lognormal_mean(t):
    x, w = np.polynomial.hermite_e.hermegauss(200)
    for v0 in (1.0, 2.5):
        ref = float((w / w.sum() * np.exp(-v0 * np.exp(math.sqrt(2 * t) * x - t))).sum())
        assert lnr.sde_mean_exp(t, v0) == pytest.approx(ref, abs=1e-10)


def _reduced_sample_exp(n, t, paths, seed):
    ds = finite.sample(sde.ShapedMLP(c_plus=0.5, c_minus=-0.5), sde.equicorrelated(2, -0.5),
                       width=n, n_paths=paths, seed=seed, t_end=t, save_every=1, progress=False)
    v = ds["V"].sel(time=t, method="nearest").values[:, 0, 0]
    assert np.all(np.isfinite(v))
    return np.exp(-v)


def test_network_side_matches_the_reduced_sampler_and_a_wider_network_does_not():
    n, paths = 8, 200_000
    alpha = 0.01 / 2  # Bonferroni over the two times
    for t in (0.5, 1.0):
        x = _reduced_sample_exp(n, t, paths, seed=11 + int(4 * t))
        se = x.std(ddof=1) / math.sqrt(paths)
        exact = lnr.finite_mean_exp(0.5, -0.5, n, t)
        z = (x.mean() - exact) / se
        assert 2 * scipy.stats.norm.sf(abs(z)) > alpha, (t, x.mean(), exact, se)
        # control: width 9.6 (20 % wider) for the same number of layers, as the Mellin
        # transform of one layer with n → 1.2 n
        s = lnr.SIGMA + 1j * np.linspace(-lnr.V_MAX, lnr.V_MAX, lnr.V_POINTS)
        log_m = lnr.log_layer_mellin(0.5, -0.5, n, s)
        log_m_wide = log_m - s * math.log(n / (1.2 * n)) + (
            scipy.special.loggamma(0.6 * n - s) - scipy.special.loggamma(0.6 * n)
            - scipy.special.loggamma(0.5 * n - s) + scipy.special.loggamma(0.5 * n))
        dv = 2 * lnr.V_MAX / (lnr.V_POINTS - 1)
        wide = lnr._mellin_mean(np.exp(round(t * n) * log_m_wide), 1.0, s, dv)
        zc = (x.mean() - wide) / se
        assert 2 * scipy.stats.norm.sf(abs(zc)) < alpha, (t, x.mean(), wide, se)


@pytest.mark.parametrize("c_plus, c_minus", [(0.5, -0.5), (0.0, -1.0)])
def test_local_rate_tends_to_one(c_plus, c_minus):
    widths = [8, 16, 256, 512]
    e = lnr.weak_error_exp(c_plus, c_minus, widths, 1.0)
    assert np.all(e > 0)
    rates = lnr.local_rate(widths, e)
    assert abs(rates[2] - 1.0) < 0.02, rates
    if c_plus + c_minus == 0:
        assert rates[0] < 0.85, rates  # pre-asymptotic at 8–16


def test_bad_input():
    with pytest.raises(CovsdeInputError, match="whole number of layers"):
        lnr.finite_mean_exp(0.5, -0.5, 8, 0.3)
    with pytest.raises(CovsdeInputError, match="width"):
        lnr.weak_error_exp(0.5, -0.5, [1], 1.0)


def test_figure_draws_the_exact_curve_instead_of_a_slope():
    import matplotlib

    matplotlib.use("Agg")
    from compare.convergence import ConvergenceResult
    from compare.figures.convergence import plot_weak_errors

    widths = [8, 16, 32]
    exact = lnr.weak_error_exp(0.5, -0.5, widths, 1.0)
    row = {"functional": "exp:0", "time": 1.0, "widths": widths,
           "errors": [[e, 0.8 * e, 1.2 * e] for e in exact], "rate": 0.9,
           "rate_ci": [0.8, 1.0], "amplitude": 0.1, "note": ""}
    r = ConvergenceResult([row], {"V0": [[1.0, -0.5], [-0.5, 1.0]], "widths": widths})
    fig = plot_weak_errors(r, "exp:0", model=sde.ShapedMLP(c_plus=0.5, c_minus=-0.5))
    ax = fig.axes[0]
    dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata())]
    assert len(dotted) == 1
    np.testing.assert_allclose(dotted[0].get_ydata(), np.abs(exact))
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"
                and len(ln.get_xdata())]  # no reference slope
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("exact e(n)" in t for t in labels)

