"""The masked drift and noise as computed (each product by C a sum over a row's keys, times
1/k once; the noise's ``ΔV`` a product with V) against the per-term form ``Σ_j x_j / k`` of
tests/masked_per_term_reference.py: the same formulas in another rounding.

* Pathwise: driven by the same unit normals, the masked lane kernel and the per-term
  reference give the same paths to round-off (causal, sliding, sparse; m = 3 and 5), while
  the reference with τ0 × 1.15 moves them by O(10⁻²).
* In law: the masked kernel (its PCG64 streams) and the reference (independent normals)
  give two samples of the death time and, at t = 0.5 and 1, of every entry V_ab and every
  correlation (three masks) that pass the two-sample KS test with Bonferroni; the reference
  with its attention coefficients (drift and noise) times 1.2 is rejected.
"""
import numpy as np
import pytest
import scipy.stats

import sde
from masked_per_term_reference import euler_paths
from sde import _kernels as K
from sde.masks import row_lists

MASKS = {
    "causal": dict(mask="causal"),
    "sliding": dict(mask="sliding", window=1),
    "sparse": dict(mask="sparse", sparse_k=1),
}
GAMMA, TAU0, RHO0, BOUND = 0.6, 1.0, 0.2, 1e4
HOT = 1.0   # γ of the law test: deaths make its strongest statistic
SEED = 7


def _rows(model, m):
    return row_lists(model.attention_mask.matrix(m, SEED))


def _reference(V0, coef, rows, dt, normals):
    n, s = normals.shape[:2]
    m = V0.shape[0]
    out = np.full((n, s + 1, m, m), np.nan)
    st = np.zeros(n, np.int8)
    death = np.full(n, np.inf)
    euler_paths(V0, coef, rows[0], rows[1], dt, normals, BOUND, out, st, death)
    return out, st, death


def _perturbed(coef, f):
    return coef._replace(att_drift=f * coef.att_drift, att_noise=f * coef.att_noise)


@pytest.mark.parametrize("m", [3, 5])
@pytest.mark.parametrize("name", sorted(MASKS))
def test_masked_kernel_equals_per_term_reference_pathwise(name, m):
    model = sde.ShapedAttention(GAMMA, TAU0, **MASKS[name])
    coef = model.limit()
    rows = _rows(model, m)
    V0 = sde.equicorrelated(m, RHO0)
    dt, n_paths, n_steps = 0.02, 16, 50
    normals = np.random.default_rng(3).standard_normal(
        (n_paths, n_steps, K.normals_per_step(m, True)))
    got = np.full((n_paths, n_steps + 1, m, m), np.nan)
    st = np.zeros(n_paths, np.int8)
    death = np.full(n_paths, np.inf)
    K.integrate_normals(V0, coef, dt, normals, BOUND, got, st, death, rows=rows)
    ref, st_ref, death_ref = _reference(V0, coef, rows, dt, normals)
    np.testing.assert_array_equal(st, st_ref)
    np.testing.assert_array_equal(death, death_ref)
    assert (st == 0).mean() > 0.8
    alive = np.isfinite(ref)
    np.testing.assert_array_equal(np.isfinite(got), alive)
    scale = np.abs(ref[alive]).max()
    assert np.abs(got - ref)[alive].max() / scale < 1e-10
    off, _, _ = _reference(V0, model.__class__(GAMMA, 1.15 * TAU0, **MASKS[name]).limit(), rows,
                        dt, normals)
    assert np.nanmax(np.abs(got - off)) / scale > 1e-3


def _law_case(name, n_paths, seed, f=1.2):
    """(V at t = 0.5, 1 (paths, 2, m, m), NaN once dead; death times, +inf if alive at the
    end) from the kernel (``sde.simulate``), from the reference and from the reference with
    its attention coefficients times ``f`` (the control)."""
    m, dt, n_steps = 3, 0.02, 50
    model = sde.ShapedAttention(HOT, TAU0, **MASKS[name])
    coef = model.limit()
    rows = _rows(model, m)
    V0 = sde.equicorrelated(m, RHO0)
    ds = sde.simulate(model, V0, t_end=n_steps * dt, dt=dt, n_paths=n_paths, seed=SEED,
                      save_every=25, progress=False)
    assert np.allclose(ds.time.values, [0.0, 0.5, 1.0])
    out = [(ds.V.values[:, 1:], ds.death_time.values)]
    rng = np.random.default_rng(seed)
    for c in (coef, _perturbed(coef, f)):
        normals = rng.standard_normal((n_paths, n_steps, K.normals_per_step(m, True)))
        ref, _, death = _reference(V0, c, rows, dt, normals)
        out.append((ref[:, [25, 50]], death))
    return out


def _statistics(x):
    """The entries V_ab (a ≤ b) and the correlations V_ab / sqrt(V_aa V_bb) (a < b) of
    x (paths, times, m, m): (paths, times, statistics)."""
    m = x.shape[-1]
    d = np.sqrt(np.einsum("ptaa->pta", x))
    cols = [x[..., i, j] for i in range(m) for j in range(i, m)]
    cols += [x[..., i, j] / (d[..., i] * d[..., j]) for i in range(m) for j in range(i + 1, m)]
    return np.stack(cols, axis=-1)


def _min_p(a, b):
    """Smallest two-sample KS p-value over the statistics at each time (alive paths) and the
    death time (+inf for a survivor: a tie at the end), and how many there are."""
    sa, sb = _statistics(a[0]), _statistics(b[0])
    ps = [scipy.stats.ks_2samp(np.minimum(a[1], 1e9), np.minimum(b[1], 1e9)).pvalue]
    for t in range(sa.shape[1]):
        for k in range(sa.shape[2]):
            x = sa[:, t, k]
            y = sb[:, t, k]
            ps.append(scipy.stats.ks_2samp(x[np.isfinite(x)], y[np.isfinite(y)]).pvalue)
    return min(ps), len(ps)


def _check_law(n_paths, seed):
    alpha = 0.01
    cases = {name: _law_case(name, n_paths, seed + i) for i, name in enumerate(sorted(MASKS))}
    n_tests = sum(_min_p(k, r)[1] for k, r, _ in cases.values())
    for name, (kernel, ref, off) in cases.items():
        p, _ = _min_p(kernel, ref)
        assert p > alpha / n_tests, f"{name}: min KS p {p:.2e} (Bonferroni over {n_tests})"
        p_off, _ = _min_p(kernel, off)
        assert p_off < alpha / n_tests, f"{name}: control not rejected (min p {p_off:.2e})"


def test_masked_kernel_law_matches_per_term_reference():
    """4000 paths per sample (γ = τ0 = 1: about 28 % die by t = 1); 57 KS tests, Bonferroni
    level 1.8·10⁻⁴. Here the smallest p is 0.04–0.11, the control's 3·10⁻⁸ – 2·10⁻¹⁰."""
    _check_law(4000, 100)


@pytest.mark.slow
def test_masked_kernel_law_matches_per_term_reference_large():
    _check_law(40000, 200)

