"""Reproducibility of :func:`sde.simulate` and the bookkeeping of dead paths.

Results depend only on (seed, RNG_BLOCK): not on the numba thread count, nor on how the
blocks are chunked into kernel calls (``CHUNK_BLOCKS``), nor on the total number of paths
(``SeedSequence.spawn(k)`` gives the same first children for every k, and the paths of a
block are integrated in order from that block's Generator, so a run of n paths is the first
n paths of any larger run with the same seed, even when n cuts a block).
"""
import math
import sys

import numba
import numpy as np
import pytest
import scipy.stats

import sde
from sde import CovsdeInputError, simulate
from sde.schema import VOLATILE_ATTRS

# the module (``sde.simulate`` as an attribute is the function re-exported by ``sde``)
S = sys.modules["sde.simulate"]

V0 = sde.equicorrelated(3, 0.2)
ATT = sde.ShapedAttention(gamma=0.5, tau0=1.0)
BLOCK = sde.ShapedBlock(gamma=0.5, tau0=1.0, heads=2)
#: blow-up prone: many paths leave the cone or pass the (small) bound before T = 2.
HOT = sde.ShapedAttention(gamma=1.0, tau0=0.3)


def run(model=ATT, n_paths=300, seed=7, **kw):
    kw = {"t_end": 0.5, "dt": 0.05, "save_every": 1, **kw}
    return simulate(model, V0, n_paths=n_paths, seed=seed, **kw)


def assert_identical(a, b):
    """Identical variables, coords and attrs, except :data:`VOLATILE_ATTRS`."""
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert a[name].dtype == b[name].dtype, name
    ka = {k: v for k, v in a.attrs.items() if k not in VOLATILE_ATTRS}
    kb = {k: v for k, v in b.attrs.items() if k not in VOLATILE_ATTRS}
    assert ka.keys() == kb.keys()
    for k in ka:
        if isinstance(ka[k], float) and math.isnan(ka[k]):
            assert math.isnan(kb[k]), k
        else:
            assert ka[k] == kb[k], k


def test_same_seed_identical():
    a, b = run(BLOCK, seed=11), run(BLOCK, seed=11)
    assert_identical(a, b)
    assert "wall_time_s" in a.attrs and "created" in a.attrs
    c = run(BLOCK, seed=12)
    assert not np.array_equal(a.V.values, c.V.values)


def test_thread_count_does_not_matter():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(n_paths=4 * S.RNG_BLOCK + 17)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run(n_paths=4 * S.RNG_BLOCK + 17)
    finally:
        numba.set_num_threads(before)
    assert_identical(one, two)


def test_chunking_does_not_matter(monkeypatch):
    # chunks are padded to KERNEL_BLOCKS Generators, so this needs no new compilation
    n = 5 * S.RNG_BLOCK + 3  # 6 blocks, the last one partial
    ref = run(n_paths=n)     # one call of CHUNK_BLOCKS (32) blocks
    monkeypatch.setattr(S, "CHUNK_BLOCKS", 4)
    assert_identical(ref, run(n_paths=n))  # chunks of 4 and 2 blocks (+ padding)
    monkeypatch.setattr(S, "CHUNK_BLOCKS", 1)
    assert_identical(ref, run(n_paths=n))  # six calls of one block


def test_prefix_of_larger_run():
    """Paths 0..n-1 do not depend on how many paths follow them (full or cut blocks)."""
    big = run(n_paths=3 * S.RNG_BLOCK - 10)
    assert big.attrs["n_dead"] >= 0
    for n in (1, 100, S.RNG_BLOCK, S.RNG_BLOCK + 44, 2 * S.RNG_BLOCK):
        small = run(n_paths=n)
        for name in ("V", "status", "death_time", "exploded"):
            np.testing.assert_array_equal(small[name].values, big[name].values[:n],
                                          err_msg=f"{name}, n = {n}")


def test_prefix_with_dead_paths():
    """Dead paths draw fewer normals; the prefix property still holds within a block."""
    kw = {"t_end": 2.0, "dt": 0.01, "bound": 50.0, "save_every": 10}
    big = run(HOT, n_paths=2 * S.RNG_BLOCK, **kw)
    assert 0 < big.attrs["n_dead"] < big.attrs["n_paths"]
    small = run(HOT, n_paths=S.RNG_BLOCK + 30, **kw)
    np.testing.assert_array_equal(small.V.values, big.V.values[:S.RNG_BLOCK + 30])
    np.testing.assert_array_equal(small.status.values, big.status.values[:S.RNG_BLOCK + 30])


@pytest.mark.parametrize("save_every, expected", [
    (1, list(range(11))),
    (3, [0, 3, 6, 9, 10]),
    (5, [0, 5, 10]),
    (10, [0, 10]),
    (11, [0, 10]),
    (100, [0, 10]),
])
def test_save_every_keeps_first_and_last(save_every, expected):
    full = run(n_paths=20, t_end=0.5, dt=0.05, save_every=1)
    ds = run(n_paths=20, t_end=0.5, dt=0.05, save_every=save_every)
    assert ds.step.values.tolist() == expected
    np.testing.assert_allclose(ds.time.values, np.array(expected) * 0.05, rtol=0, atol=1e-15)
    # thinning the saved grid changes nothing else
    np.testing.assert_array_equal(ds.V.values, full.V.values[:, expected])
    np.testing.assert_array_equal(ds.death_time.values, full.death_time.values)


def test_default_save_grid():
    n_steps, steps = S.time_grid(1.0, 0.001)
    assert n_steps == 1000
    assert steps[0] == 0 and steps[-1] == 1000 and len(steps) <= S._DEFAULT_SAVED_TIMES + 2
    n_steps, steps = S.time_grid(1.0, 1 / 7)
    assert n_steps == 7 and steps.tolist() == list(range(8))


@pytest.mark.parametrize("t_end, dt, n_steps", [
    (1.0, 0.1, 10), (0.3, 0.1, 3), (1.0, 0.01, 100), (2.0, 2.0, 1), (1.0, 1 / 3, 3),
    (1.0 + 5e-10, 0.1, 10),  # within the relative tolerance 1e-9
])
def test_time_grid_whole_steps(t_end, dt, n_steps):
    assert S.time_grid(t_end, dt)[0] == n_steps


@pytest.mark.parametrize("t_end, dt, needle", [
    (1.0, 0.3, "whole number"),
    (1.0 + 1e-6, 0.1, "whole number"),
    (0.05, 0.1, "dt must be <= t_end"),
    (0.0, 0.1, "t_end"),
    (-1.0, 0.1, "t_end"),
    (float("nan"), 0.1, "t_end"),
    (1.0, 0.0, "dt"),
    (1.0, float("inf"), "dt"),
])
def test_time_grid_rejects(t_end, dt, needle):
    with pytest.raises(CovsdeInputError, match=needle):
        S.time_grid(t_end, dt)
    with pytest.raises(CovsdeInputError, match=needle):
        simulate(ATT, V0, t_end=t_end, dt=dt, n_paths=1, seed=0)


# ------------------------------------------------------------------------ dead paths


@pytest.fixture(scope="module")
def hot():
    ds = simulate(HOT, V0, t_end=2.0, dt=0.01, n_paths=600, seed=1, bound=50.0, save_every=5)
    return ds


def test_dead_paths_bookkeeping(hot):
    ds = hot
    status = ds.status.values
    death = ds.death_time.values
    V = ds.V.values
    t = ds.time.values
    # both kinds of death happen here, and not every path dies
    assert np.any(status == 1) and np.any(status == 2) and np.any(status == 0)
    assert set(np.unique(status)) <= {0, 1, 2}
    np.testing.assert_array_equal(ds.exploded.values, status != 0)
    np.testing.assert_array_equal(np.isfinite(death), status != 0)
    assert np.all(np.isinf(death[status == 0]) & (death[status == 0] > 0))
    dead = status != 0
    # a death happens at a step of the grid, after t = 0 and no later than T
    steps_at_death = death[dead] / ds.attrs["dt"]
    np.testing.assert_allclose(steps_at_death, np.round(steps_at_death), atol=1e-9)
    assert np.all((death[dead] > 0) & (death[dead] <= ds.attrs["t_end"] + 1e-12))
    # V is finite strictly before the death time and NaN from then on
    finite = np.isfinite(V).all(axis=(2, 3))
    nan = np.isnan(V).all(axis=(2, 3))
    assert np.all(finite | nan)
    before = t[None, :] < death[:, None] - 1e-12
    np.testing.assert_array_equal(finite, before)
    # alive paths stay within the bound and positive definite
    alive = V[~dead]
    assert np.all(np.abs(alive) <= 50.0)
    assert np.all(np.linalg.eigvalsh(alive[:, -1]) > 0)


def test_dead_fraction_attrs(hot):
    a = hot.attrs
    status = hot.status.values
    n, k = len(status), int(np.count_nonzero(status))
    assert a["n_paths"] == n and a["n_dead"] == k
    assert a["n_left_cone"] == np.count_nonzero(status == 1)
    assert a["n_blew_up"] == np.count_nonzero(status == 2)
    assert a["n_factor_failed"] == 0
    assert a["dead_fraction"] == k / n
    # Clopper–Pearson: the beta quantiles (the closed form the attrs use) ...
    lo = scipy.stats.beta.ppf(0.025, k, n - k + 1)
    hi = scipy.stats.beta.ppf(0.975, k + 1, n - k)
    assert a["dead_fraction_ci95_low"] == pytest.approx(lo, rel=1e-12)
    assert a["dead_fraction_ci95_high"] == pytest.approx(hi, rel=1e-12)
    # ... equal to scipy's root-search interval within its root tolerance (~1e-11)
    ci = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    assert a["dead_fraction_ci95_low"] == pytest.approx(ci.low, rel=1e-9)
    assert a["dead_fraction_ci95_high"] == pytest.approx(ci.high, rel=1e-9)


def test_no_deaths_ci():
    ds = run(sde.ShapedMLP(), n_paths=50, t_end=0.1, dt=0.01)
    a = ds.attrs
    assert a["n_dead"] == 0 and a["dead_fraction"] == 0.0
    assert a["dead_fraction_ci95_low"] == 0.0
    assert a["dead_fraction_ci95_high"] == pytest.approx(1 - 0.025 ** (1 / 50), rel=1e-9)
    assert np.all(np.isinf(ds.death_time.values))


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 7), (7, 7), (1, 2), (5, 100), (37, 4096),
                                  (4095, 4096)])
@pytest.mark.parametrize("level", [0.95, 0.99])
def test_dead_fraction_ci_is_scipys_clopper_pearson(k, n, level):
    from sde.schema import dead_fraction_ci

    frac, lo, hi = dead_fraction_ci(k, n, level)
    ci = scipy.stats.binomtest(k, n).proportion_ci(level, method="exact")
    assert frac == k / n
    assert lo == pytest.approx(ci.low, rel=1e-9, abs=1e-15)
    assert hi == pytest.approx(ci.high, rel=1e-9, abs=1e-15)
    # control: another level is another interval
    other = dead_fraction_ci(k, n, 0.9)
    assert (other[1], other[2]) != (lo, hi)
