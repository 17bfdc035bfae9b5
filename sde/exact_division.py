"""Division by a constant as a product and two fused multiply-adds, with the bits of ``x / d``.

A vector division is the slowest arithmetic the lane kernels do (a ``vdivpd`` issues every
8–16 cycles, a multiply or an FMA twice a cycle), and at small m the attention drift's
divisions by m, m² and 2m were its main cost. :func:`div_const` returns the correctly
rounded quotient ``x / d`` — the same double as the division — from ``y = RN(1/d)``:

    q  = RN(x · y)              (within one ulp of x/d: see below)
    r  = x − q·d                (one FMA; exact)
    q' = RN(q + r·y)            (one FMA) = RN(x / d)

This is Markstein's theorem (Handbook of Floating-Point Arithmetic, the FMA-based division):
if ``y`` is within half an ulp of ``1/d`` (true of ``RN(1/d)``) and ``q`` is within one ulp of
``x/d``, then ``r`` is exact and ``q'`` is the correctly rounded quotient. ``q = RN(x·y)`` is
within one ulp of ``x/d`` when ``|d·y − 1| ≤ 2⁻⁵⁴`` (the relative error of ``y`` adds at most
half an ulp to the rounding's half ulp): :func:`one_fma_step_exact` checks that, and for the
divisors where it fails (of the m, m², 2m with m ≤ 16, only 49 = 7² and 196 = 14²)
:func:`div_const` divides.
For a power of two ``q`` is already exact (``r = 0``).

Caveats, outside the kernels' range: a quotient that underflows (``|x/d|`` below 2⁻¹⁰²²),
``x`` infinite (``q'`` is NaN where the division gives ±inf) and ``x = −0.0`` (``q' = +0.0``).
The kernels only add these quotients to sums that start at +0.0, of finite states.
tests/test_exact_division.py compares the two on millions of doubles across binades.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """``a·b + c`` rounded once (LLVM ``llvm.fma.f64``: one instruction with FMA hardware)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64] * 3),
                                            "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@njit(cache=True, inline="always")
def one_fma_step_exact(d):
    """True when ``RN(x · RN(1/d))`` is within one ulp of ``x/d`` for every x:
    ``|d·RN(1/d) − 1| ≤ 2⁻⁵⁴`` (the residual computed exactly by an FMA)."""
    y = 1.0 / d
    return abs(fma(d, y, -1.0)) <= 5.551115123125783e-17  # 2⁻⁵⁴


@njit(cache=True, inline="always")
def div_const(x, d):
    """``x / d`` bit for bit, by a multiply and two FMAs when :func:`one_fma_step_exact` ``(d)``
    (else a division). Meant for a ``d`` that is a compile-time constant in the caller (m, m²,
    2m in a kernel built for one m): ``1/d`` and the check then fold away."""
    if one_fma_step_exact(d):
        y = 1.0 / d
        q = x * y
        r = fma(-q, d, x)
        return fma(r, y, q)
    return x / d


def check_divisor(d):
    """Python mirror of :func:`one_fma_step_exact` with exact rationals (for the tests)."""
    from fractions import Fraction
    return abs(Fraction(d) * Fraction(1.0 / d) - 1) <= Fraction(1, 2 ** 54)


__all__ = ["fma", "div_const", "one_fma_step_exact", "check_divisor"]
