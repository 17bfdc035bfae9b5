"""sde.exact_division.div_const gives the bits of x / d (the lane kernels' divisions by m, m², 2m)."""
import numpy as np
import pytest
from numba import njit

from sde.exact_division import check_divisor, div_const, one_fma_step_exact

KERNEL_DIVISORS = sorted({float(d) for m in range(2, 17) for d in (m, m * m, 2 * m)})


@njit(cache=True)
def _mismatches(x, d):
    bad = 0
    for i in range(x.shape[0]):
        if div_const(x[i], d) != x[i] / d:
            bad += 1
    return bad


@njit(cache=True)
def _naive_mismatches(x, d):
    y = 1.0 / d
    bad = 0
    for i in range(x.shape[0]):
        if x[i] * y != x[i] / d:
            bad += 1
    return bad


@njit(cache=True)
def _exact_step(d):
    return one_fma_step_exact(d)


def _samples(rng, d, n=100_000):
    """Doubles across binades and signs, random bit patterns, and near-multiples of d."""
    x = rng.uniform(1.0, 2.0, n) * 2.0 ** rng.integers(-900, 900, n) * rng.choice([-1.0, 1.0], n)
    bits = rng.integers(0, 2 ** 63, n, dtype=np.int64).view(np.float64)
    bits = bits[np.isfinite(bits) & (np.abs(bits) > 1e-290) & (np.abs(bits) < 1e290)]
    k = rng.integers(1, 2 ** 52, n).astype(np.float64) * d
    return np.concatenate([x, bits, k, np.nextafter(k, 0.0), np.nextafter(k, np.inf),
                           rng.uniform(-10.0, 10.0, n)])


def test_the_check_in_numba_is_the_exact_rational_one():
    assert [_exact_step(d) for d in KERNEL_DIVISORS] == [check_divisor(d) for d in KERNEL_DIVISORS]
    # of the kernels' divisors only 49 = 7² and 196 = 14² fail the one-ulp condition (they divide)
    assert [d for d in KERNEL_DIVISORS if not check_divisor(d)] == [49.0, 196.0]


@pytest.mark.parametrize("d", KERNEL_DIVISORS)
def test_same_bits_as_the_division(d):
    x = _samples(np.random.default_rng(int(d)), d)
    assert _mismatches(x, d) == 0


def test_control_the_plain_product_differs():
    # the product by RN(1/3) alone is not the quotient: the comparison can see a difference
    x = _samples(np.random.default_rng(0), 3.0)
    assert _naive_mismatches(x, 3.0) > 1000
