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


@njit
def _fill_paired(rows, k, out):
    """:func:`sde.pcg64.fill_standard_normal` with the paired form of the draw."""
    inc_hi, inc_lo = rows[k, 2], rows[k, 3]
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = pcg64.paired_start(rows[k, 0], rows[k, 1], inc_hi,
                                                            inc_lo)
    for i in range(out.shape[0]):
        out[i], a_hi, a_lo, b_hi, b_lo = pcg64.standard_normal_paired(
            a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)
    rows[k, 0], rows[k, 1] = pcg64.paired_end(a_hi, a_lo, inc_hi, inc_lo)


FORMS = {"inlined": pcg64.fill_standard_normal, "split": _fill_split, "paired": _fill_paired}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("seed", [0, 12345, 2 ** 63 - 1])
def test_stream_equals_numpy_generator(seed, form):
    """Every form of the draw (fully inlined; first try inlined, the rest a call; the paired
    form, two LCG chains) gives the Generator's draws and leaves its stream where it does."""
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


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_paired_form_ends_where_the_stream_is(count):
    """After 0 … 3 paired draws the pair steps back to the Generator's state (also after no
    draw at all, and at a rejected first try's restart), and ``MULTIPLIER_2`` and
    ``MULTIPLIER_INV`` are the square and the inverse of the multiplier mod 2¹²⁸."""
    m = 1 << 128
    assert pcg64.MULTIPLIER_2 == pcg64.MULTIPLIER ** 2 % m
    assert pcg64.MULTIPLIER * pcg64.MULTIPLIER_INV % m == 1
    rows = pcg64.states([_gen(5)])
    out = np.empty(count)
    _fill_paired(rows, 0, out)
    g = _gen(5)
    assert np.array_equal(out, g.standard_normal(count))
    assert np.array_equal(rows[0], pcg64.states([g])[0])


def test_paired_negative_control_a_perturbed_jump_is_another_stream():
    """The paired check can fail: a pair whose two-step increment is off by one draws every
    other normal from another stream."""
    @njit
    def fill_off(rows, out):
        inc_hi, inc_lo = rows[0, 2], rows[0, 3]
        a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = pcg64.paired_start(rows[0, 0], rows[0, 1],
                                                                inc_hi, inc_lo)
        c_lo += np.uint64(2)
        for i in range(out.shape[0]):
            out[i], a_hi, a_lo, b_hi, b_lo = pcg64.standard_normal_paired(
                a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)

    out = np.empty(1000)
    fill_off(pcg64.states([_gen(3)]), out)
    assert np.mean(out == _gen(3).standard_normal(1000)) < 0.6
