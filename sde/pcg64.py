"""Private: numpy's PCG64 + ziggurat normal, inlined into numba kernels, same stream.

``Generator(PCG64(seed)).standard_normal()`` called inside a numba kernel goes through the
bit generator's C function pointer and keeps the 128-bit state in memory. The lane kernels
draw most of their time, so they use this copy instead: the state lives in registers while
one lane draws its step's normals, the 128-bit LCG step is one LLVM ``i128`` multiply
(:func:`_lcg_step`), and the ziggurat is numba's port of numpy's ``random_standard_normal``
with numba's own tables — the draws are bit-identical to the Generator's
(tests/test_pcg64.py checks millions of draws against numpy, tails included).

The normal draw comes in two forms, the same draws step for step, built from one first try
(:func:`first_try`) and one slow path (:func:`wedge_or_tail`): :func:`standard_normal`, fully
inlined into its caller, and :func:`standard_normal_split`, whose rare rest (about 1 % of
draws) is a call. The SDE kernels draw with the first, the reduced finite-width samplers
with the second (:mod:`finite.inline_rng`), and their long runs of draws from one stream
(the hidden Gram's m·n normals) with its paired form, :func:`standard_normal_paired`, which
carries the next two states and steps each by two, so that consecutive draws' LCG steps do
not wait for each other.

State layout: one row of four ``uint64`` per Generator, ``(state_hi, state_lo, inc_hi,
inc_lo)`` (:func:`states`); a kernel advances the first two and :func:`write_back` returns
them to the Generators, so a Generator continues exactly where the kernel left it.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
# numba's copy of numpy's ziggurat tables (the ones numba's Generator.standard_normal uses)
from numba.np.random._constants import (fi_double, ki_double, wi_double, ziggurat_nor_inv_r,
                                        ziggurat_nor_r)

#: PCG64's 128-bit LCG multiplier (numpy's PCG_DEFAULT_MULTIPLIER_128).
MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341
_MASK64 = (1 << 64) - 1


#: M² mod 2¹²⁸: two LCG steps in one, ``s_{k+2} = M² s_k + (M + 1) inc``
MULTIPLIER_2 = (MULTIPLIER * MULTIPLIER) & ((1 << 128) - 1)
#: M⁻¹ mod 2¹²⁸ (M is odd): one step back, ``s_{k−1} = M⁻¹ (s_k − inc)``
MULTIPLIER_INV = pow(MULTIPLIER, -1, 1 << 128)


def _affine_intrinsic(name, multiplier, subtract_first, doc):
    """An intrinsic ``(s_hi, s_lo, c_hi, c_lo) -> (hi, lo)`` of ``s · multiplier + c`` (or,
    ``subtract_first``, ``(s − c) · multiplier``) mod 2¹²⁸, in one LLVM i128 multiply."""
    def impl(typingctx, s_hi, s_lo, c_hi, c_lo):
        sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64, types.uint64,
                                              types.uint64)

        def codegen(context, builder, signature, args):
            i128, i64 = ir.IntType(128), ir.IntType(64)
            sixty_four = ir.Constant(i128, 64)

            def join(hi, lo):
                return builder.or_(builder.shl(builder.zext(hi, i128), sixty_four),
                                   builder.zext(lo, i128))

            s, c = join(args[0], args[1]), join(args[2], args[3])
            k = ir.Constant(i128, multiplier)
            if subtract_first:
                new = builder.mul(builder.sub(s, c), k)
            else:
                new = builder.add(builder.mul(s, k), c)
            hi = builder.trunc(builder.lshr(new, sixty_four), i64)
            lo = builder.trunc(new, i64)
            return context.make_tuple(builder, signature.return_type, (hi, lo))

        return sig, codegen

    impl.__doc__ = doc
    impl.__name__ = impl.__qualname__ = name
    return intrinsic(impl)


_lcg_step = _affine_intrinsic(
    "_lcg_step", MULTIPLIER, False,
    "(hi, lo) of ``state · MULTIPLIER + inc`` mod 2¹²⁸ (one LCG step).")
_lcg_step2 = _affine_intrinsic(
    "_lcg_step2", MULTIPLIER_2, False,
    "(hi, lo) of ``state · MULTIPLIER_2 + c2`` mod 2¹²⁸ (two LCG steps, "
    "``c2 = (MULTIPLIER + 1) inc``).")
_lcg_unstep = _affine_intrinsic(
    "_lcg_unstep", MULTIPLIER_INV, True,
    "(hi, lo) of ``(state − inc) · MULTIPLIER_INV`` mod 2¹²⁸ (one LCG step back).")


@njit(cache=True, inline="always")
def next_uint64(hi, lo, inc_hi, inc_lo):
    """PCG64's next output (step, then the XSL-RR output of the new state): (r, hi, lo)."""
    hi, lo = _lcg_step(hi, lo, inc_hi, inc_lo)
    return output(hi, lo), hi, lo


@njit(cache=True, inline="always")
def output(hi, lo):
    """PCG64's XSL-RR output of the state (hi, lo)."""
    x = hi ^ lo
    rot = hi >> np.uint64(58)
    return (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


@njit(cache=True, inline="always")
def next_double(hi, lo, inc_hi, inc_lo):
    """A double in [0, 1) from the top 53 bits (numpy's ``next_double``): (u, hi, lo).

    The 53-bit integer converts exactly through int64 (a cheaper instruction than uint64's).
    """
    r, hi, lo = next_uint64(hi, lo, inc_hi, inc_lo)
    return np.float64(np.int64(r >> np.uint64(11))) * (1.0 / 9007199254740992.0), hi, lo


#: numpy's try takes from a PCG64 output r the layer ``idx = r & 0xff``, the sign
#: ``(r >> 8) & 1`` and ``rabs = (r >> 9) & (2⁵² − 1)``, and forms ``x = rabs · wi[idx] · (±1)``,
#: accepted when ``rabs < ki[idx]``. Here the sign is folded into a 512-entry table
#: ``±wi[i & 0xff]`` (minus for i ≥ 256) on the output's low nine bits ``i = r & 0x1ff``, and
#: the thresholds are read on the same index: one load and one product per draw instead of
#: two of each (and no branch on the sign, a fair coin). IEEE multiplication is symmetric in
#: sign, so x is bit for bit numpy's.
WI_SIGNED = np.concatenate([wi_double, -wi_double])
#: ``ki[i & 0xff]`` as int64 (all < 2⁵³: the acceptance test is one integer compare)
KI_TWICE = np.concatenate([ki_double, ki_double]).astype(np.int64)
_U9, _NINE, _MASK52, _BYTE = np.uint64(9), np.uint64(0x1ff), np.uint64(0x000fffffffffffff), 0xff


@njit(cache=True, inline="always")
def try_output(r):
    """The ziggurat's try on the PCG64 output ``r``: ``(accepted, x, idx, rabs)``."""
    i9 = np.int64(r & _NINE)
    rabs = np.int64((r >> _U9) & _MASK52)
    # rabs < 2⁵²: exact through int64
    return rabs < KI_TWICE[i9], np.float64(rabs) * WI_SIGNED[i9], i9 & _BYTE, rabs


@njit(cache=True, inline="always")
def first_try(hi, lo, inc_hi, inc_lo):
    """The ziggurat's first try: ``(accepted, x, idx, rabs, hi, lo)``; ``accepted`` (about
    99 % of draws) means x is the draw, else :func:`wedge_or_tail` continues from
    ``(x, idx, rabs)`` (``idx`` the layer, 0 … 255)."""
    r, hi, lo = next_uint64(hi, lo, inc_hi, inc_lo)
    ok, x, idx, rabs = try_output(r)
    return ok, x, idx, rabs, hi, lo


@njit(cache=True, inline="always")
def wedge_or_tail(x, idx, rabs, hi, lo, inc_hi, inc_lo):
    """The ziggurat's slow path after a rejected try ``(x, idx, rabs)``: the tail beyond r
    (``idx`` 0: always a draw) or the wedge test of layer ``idx``: ``(accepted, x, hi, lo)``;
    not accepted means a new :func:`first_try`."""
    if idx == 0:
        while True:
            u1, hi, lo = next_double(hi, lo, inc_hi, inc_lo)
            xx = -ziggurat_nor_inv_r * np.log1p(-u1)
            u2, hi, lo = next_double(hi, lo, inc_hi, inc_lo)
            yy = -np.log1p(-u2)
            if yy + yy > xx * xx:
                if (rabs >> 8) & 0x1:
                    return True, -(ziggurat_nor_r + xx), hi, lo
                return True, ziggurat_nor_r + xx, hi, lo
    u, hi, lo = next_double(hi, lo, inc_hi, inc_lo)
    return (fi_double[idx - 1] - fi_double[idx]) * u + fi_double[idx] < np.exp(-0.5 * x * x), \
        x, hi, lo


@njit(cache=True, inline="always")
def standard_normal(hi, lo, inc_hi, inc_lo):
    """One N(0, 1) draw, numpy's ziggurat (numba's port, same tables), fully inlined:
    (x, hi, lo). The whole ziggurat lands in the caller's loop; with no call on the rare
    path, the caller's values stay in registers across it."""
    while True:
        ok, x, idx, rabs, hi, lo = first_try(hi, lo, inc_hi, inc_lo)
        if ok:
            return x, hi, lo
        ok, x, hi, lo = wedge_or_tail(x, idx, rabs, hi, lo, inc_hi, inc_lo)
        if ok:
            return x, hi, lo


@njit(cache=True)
def normal_rest(x, idx, rabs, hi, lo, inc_hi, inc_lo):
    """The draw after a rejected first try ``(x, idx, rabs)`` (:func:`first_try`), as a
    function of its own: :func:`wedge_or_tail`, then new tries, as in
    :func:`standard_normal`: (x, hi, lo)."""
    while True:
        ok, x, hi, lo = wedge_or_tail(x, idx, rabs, hi, lo, inc_hi, inc_lo)
        if ok:
            return x, hi, lo
        ok, x, idx, rabs, hi, lo = first_try(hi, lo, inc_hi, inc_lo)
        if ok:
            return x, hi, lo


@njit(cache=True, inline="always")
def standard_normal_split(hi, lo, inc_hi, inc_lo):
    """:func:`standard_normal` (the same draws, step for step) with only the first try
    inlined and the rare rest (about 1 % of draws) a call to :func:`normal_rest`: (x, hi, lo).
    A caller inlines about a fifth of the code, so it compiles faster and keeps fewer values
    live around the draw; the call spills the caller's live vector registers (all
    caller-saved) on the rare path (the SDE lane kernels were 10–20 % slower with it)."""
    ok, x, idx, rabs, hi, lo = first_try(hi, lo, inc_hi, inc_lo)
    if ok:
        return x, hi, lo
    return normal_rest(x, idx, rabs, hi, lo, inc_hi, inc_lo)


# The paired form. One stream's LCG is a chain of dependent 128-bit multiply-adds (about
# five cycles each), and a draw waits for its step. The paired form carries the next two
# states, A = s_{k+1} (whose output the next draw takes) and B = s_{k+2}, and steps each by
# two (``A' = M² A + c2``): two independent chains, the same states in the same order.
# A rejected first try continues from A with the ordinary draw (normal_rest) and restarts
# the pair from where it ends.

@njit(cache=True, inline="always")
def paired_start(hi, lo, inc_hi, inc_lo):
    """The pair of a stream at state (hi, lo): ``(a_hi, a_lo, b_hi, b_lo, c2_hi, c2_lo)``,
    A and B the next two states and ``c2 = (M + 1) inc`` (:func:`standard_normal_paired`)."""
    c_hi, c_lo = _lcg_step(inc_hi, inc_lo, inc_hi, inc_lo)
    a_hi, a_lo = _lcg_step(hi, lo, inc_hi, inc_lo)
    b_hi, b_lo = _lcg_step(a_hi, a_lo, inc_hi, inc_lo)
    return a_hi, a_lo, b_hi, b_lo, c_hi, c_lo


@njit(cache=True, inline="always")
def paired_end(a_hi, a_lo, inc_hi, inc_lo):
    """The stream's state (hi, lo) from its pair: the state before A (one step back)."""
    return _lcg_unstep(a_hi, a_lo, inc_hi, inc_lo)


@njit(cache=True, inline="always")
def standard_normal_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo):
    """:func:`standard_normal_split` on the pair of :func:`paired_start`: the same draw
    (the same outputs in the same order), ``(x, a_hi, a_lo, b_hi, b_lo)``."""
    ok, x, idx, rabs = try_output(output(a_hi, a_lo))
    if ok:
        n_hi, n_lo = _lcg_step2(a_hi, a_lo, c_hi, c_lo)
        return x, b_hi, b_lo, n_hi, n_lo
    x, hi, lo = normal_rest(x, idx, rabs, a_hi, a_lo, inc_hi, inc_lo)
    a_hi, a_lo = _lcg_step(hi, lo, inc_hi, inc_lo)
    b_hi, b_lo = _lcg_step(a_hi, a_lo, inc_hi, inc_lo)
    return x, a_hi, a_lo, b_hi, b_lo


def states(gens):
    """(len(gens), 4) uint64: each PCG64 Generator's ``(state_hi, state_lo, inc_hi, inc_lo)``."""
    out = np.empty((len(gens), 4), dtype=np.uint64)
    for k, g in enumerate(gens):
        st = g.bit_generator.state
        if st["bit_generator"] != "PCG64":
            raise TypeError(f"the inlined generator is PCG64 only, got {st['bit_generator']}")
        s, inc = st["state"]["state"], st["state"]["inc"]
        out[k] = (s >> 64, s & _MASK64, inc >> 64, inc & _MASK64)
    return out


def write_back(gens, rows):
    """Set each Generator's PCG64 state from ``rows`` (as advanced by a kernel)."""
    for g, (hi, lo, _, _) in zip(gens, rows):
        st = g.bit_generator.state
        st["state"]["state"] = (int(hi) << 64) | int(lo)
        g.bit_generator.state = st


@njit(cache=True)
def fill_standard_normal(rows, k, out):
    """Fill ``out`` (1-D) with draws from row ``k`` of ``rows``, advancing it (for tests)."""
    hi, lo, inc_hi, inc_lo = rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
    for i in range(out.shape[0]):
        out[i], hi, lo = standard_normal(hi, lo, inc_hi, inc_lo)
    rows[k, 0] = hi
    rows[k, 1] = lo
