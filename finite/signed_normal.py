"""The normal draw of the hidden-Gram pass: numpy's ziggurat first try on a signed table.

:func:`finite.inline_rng.standard_normal` takes numpy's first try from a PCG64 output r as
``idx = r & 0xff``, ``sign = (r >> 8) & 1``, ``rabs = (r >> 9) & (2⁵² − 1)``,
``x = rabs · wi[idx] · (±1)``, accepted when ``rabs < ki[idx]``. Here the sign is folded
into a 512-entry table ``WI_SIGNED[i] = ±wi[i & 0xff]`` (minus for i ≥ 256) indexed by the
output's low nine bits ``i = r & 0x1ff``, and the acceptance test reads ``ki`` on the same
index (``KI_TWICE``): one load and one product per draw instead of two of each. The product
is the same up to its sign (IEEE multiplication is symmetric in sign), so the draws are
bit-identical to ``Generator.standard_normal``. A rejected first try (about 1 % of draws) is
drawn again from the state before it by :func:`finite.inline_rng.standard_normal`, which
repeats the same try and continues with the wedge or tail: the same draw, the same stream.

Measured in a plain draw loop (benchmarks/bench_lanes.py, "scalar signed table"):
1.13–1.19× faster per normal than :func:`finite.inline_rng.standard_normal` on a loaded
machine. The hidden-Gram pass, where the reduced samplers draw almost all their normals,
draws through it (:mod:`finite.reduced_kernels`).
"""
import numpy as np
from numba import njit
from numba.np.random._constants import ki_double, wi_double

from sde import pcg64

from . import inline_rng

#: ``±wi[i & 0xff]`` for the low nine bits i of a PCG64 output (minus where bit 8 is set)
WI_SIGNED = np.concatenate([wi_double, -wi_double])
#: ``ki[i & 0xff]`` as int64 (all < 2⁵³) for the same index
KI_TWICE = np.concatenate([ki_double, ki_double]).astype(np.int64)

_NINE = np.uint64(0x1ff)
_U9 = np.uint64(9)
_MASK52 = np.uint64(0x000fffffffffffff)


@njit(cache=True, inline="always")
def standard_normal(hi, lo, inc_hi, inc_lo):
    """One N(0, 1) draw, the draw of :func:`finite.inline_rng.standard_normal`: (x, hi, lo)."""
    r, h1, w1 = pcg64.next_uint64(hi, lo, inc_hi, inc_lo)
    i9 = np.int64(r & _NINE)
    rabs = np.int64((r >> _U9) & _MASK52)
    if rabs < KI_TWICE[i9]:
        return np.float64(rabs) * WI_SIGNED[i9], h1, w1
    return inline_rng.standard_normal(hi, lo, inc_hi, inc_lo)


@njit(cache=True)
def fill_normals(row, out):
    """Fill the 1-D ``out`` with draws from the state row ``row`` (4,), advancing it."""
    hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
    for i in range(out.shape[0]):
        out[i], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
    row[0] = hi
    row[1] = lo
