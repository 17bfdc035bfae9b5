"""The inlined PCG64 + ziggurat (sde/pcg64.py) draws numpy's Generator stream bit for bit."""
import numpy as np
import pytest
from numba import njit

from sde import pcg64
from sde.runs import block_generators


def _gen(seed):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


@njit
def _fill_split(rows, k, out):
    """:func:`sde.pcg64.fill_standard_normal` with the split form of the draw."""
    hi, lo, inc_hi, inc_lo = rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
    for i in range(out.shape[0]):
        out[i], hi, lo = pcg64.standard_normal_split(hi, lo, inc_hi, inc_lo)
    rows[k, 0] = hi
    rows[k, 1] = lo


@njit
def _rejected_first_tries(rows, k, n):
    """(tail, wedge): how many of n draws' first tries were rejected with idx 0 and idx > 0."""
    hi, lo, inc_hi, inc_lo = rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
    tail = wedge = 0
    for _ in range(n):
        ok, x, idx, rabs, hi, lo = pcg64.first_try(hi, lo, inc_hi, inc_lo)
        if not ok:
            if idx == 0:
                tail += 1
            else:
                wedge += 1
    return tail, wedge


FORMS = {"inlined": pcg64.fill_standard_normal, "split": _fill_split}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("seed", [0, 12345, 2 ** 63 - 1])
def test_stream_equals_numpy_generator(seed, form):
    """Both forms of the draw (fully inlined; first try inlined, the rest a call) give the
    Generator's draws and leave its stream where it does."""
    n = 2_000_000
    rows = pcg64.states([_gen(seed)])
    ours = np.empty(n)
    FORMS[form](rows, 0, ours)
    g = _gen(seed)
    ref = g.standard_normal(n)
    assert np.array_equal(ours, ref)
    assert np.array_equal(rows[0], pcg64.states([g])[0])
    # both rare branches of the ziggurat were taken: the tail beyond r (idx 0) and wedges
    assert np.count_nonzero(np.abs(ref) > pcg64.ziggurat_nor_r) > 100
    tail, wedge = _rejected_first_tries(pcg64.states([_gen(seed)]), 0, 200_000)
    assert tail > 10 and wedge > 500


def test_state_is_written_back_and_continues_the_stream():
    gens = block_generators(7, 3 * 256)
    rows = pcg64.states(gens)
    head = np.empty(1000)
    pcg64.fill_standard_normal(rows, 1, head)
    pcg64.write_back(gens, rows)
    ref = block_generators(7, 3 * 256)[1]
    assert np.array_equal(head, ref.standard_normal(1000))
    assert np.array_equal(gens[1].standard_normal(500), ref.standard_normal(500))
    # the rows not drawn from are unchanged
    assert np.array_equal(gens[0].standard_normal(10), block_generators(7, 256)[0].standard_normal(10))


def test_negative_control_another_increment_is_another_stream():
    """The check above can fail: one bit of the increment changes every draw."""
    rows = pcg64.states([_gen(3)])
    rows[0, 3] ^= np.uint64(2)
    ours = np.empty(1000)
    pcg64.fill_standard_normal(rows, 0, ours)
    assert np.mean(ours == _gen(3).standard_normal(1000)) < 0.01


def test_other_bit_generators_are_refused():
    with pytest.raises(TypeError, match="PCG64"):
        pcg64.states([np.random.Generator(np.random.MT19937(0))])


def test_signed_table_is_numpys():
    """The first try's table is numpy's ``wi`` on the low eight bits with bit 8 the sign, and
    its thresholds are ``ki`` on both halves."""
    from numba.np.random._constants import ki_double, wi_double
    np.testing.assert_array_equal(pcg64.WI_SIGNED[:256], wi_double)
    np.testing.assert_array_equal(pcg64.WI_SIGNED[256:], -wi_double)
    np.testing.assert_array_equal(pcg64.KI_TWICE, np.tile(ki_double, 2).astype(np.int64))
