"""Normals of eight RNG blocks drawn side by side in SIMD lanes, against the sampler's scalar draw.

    .venv/bin/python benchmarks/bench_lanes.py [--quick]

The reduced samplers draw each RNG block's hidden-Gram normals one after the other through
:func:`finite.inline_rng.standard_normal_paired` (numpy's PCG64 + ziggurat, first try
inlined, its sign folded into a 512-entry table ``±wi`` on the output's low nine bits, the
stream's next two states carried and each stepped by two: :mod:`sde.pcg64`); the scalar
baseline is that draw, with the one-chain draw beside it.
This benchmark holds a prototype that draws the same normals for eight blocks at once
(eight independent PCG64 streams, one per 64-bit lane of a 512-bit register) and measures
whether it is fast enough to restructure the sampler around it (goal: ≥ 1.3× the scalar
draw per normal). Variants, all drawing exactly each block's
``Generator(PCG64).standard_normal`` sequence (checked before timing, tails included):

* ``lanes v×j``: the 128-bit LCG step of the eight lanes in LLVM vector IR, ``v`` uint64 per
  vector operation (8: one zmm register; 4: two ymm), the 64 × 64 → 128 product in 32-bit
  pieces; ``j`` outputs per lane per round, all from the round's first state
  (``s_{k+i} = M^i s_k + c_i``, so the ``j`` multiplies do not wait for each other). The
  ziggurat's first try runs per lane on the stored outputs; a lane whose first try is
  rejected (about 1 % of draws) draws that normal again, and the rest of its round, with the
  scalar draw from the state before that step.
* ``lanes 8×1 + gathers``: the first try also in vector IR, its two table lookups as
  ``llvm.masked.gather`` (vgatherqpd / vpgatherqq on AVX-512).
* ``…, signed table``: the first try on the scalar draw's signed table; without it, numpy's
  table and a product by the sign.

CPU seconds of this process (``time.process_time``), one thread; each variant fills the same
(768, 8) buffer (the m·n = 768 hidden normals of an n = 256, m = 3 layer, for 8 blocks)
4000 times (500 with ``--quick``), best of three; ratios are the sampler's scalar draw /
variant within this run. The kernels are compiled at each run (not cached: the variants are
built by a factory).
"""
import argparse
import os
import platform
import subprocess
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
from numba.np.random._constants import ki_double, wi_double

from finite import inline_rng
from sde import pcg64
from sde.runs import RNG_BLOCK, block_generators

LANES = 8
GOAL = 1.3
_MASK64 = (1 << 64) - 1
_WI = wi_double.copy()
_KI = ki_double.astype(np.int64)
_U1, _U8 = np.uint64(1), np.uint64(8)
_BYTE = np.uint64(0xff)
_MASK52 = np.uint64(0x000fffffffffffff)


# ------------------------------------------------------------------ scalar draws

@njit
def scalar_fill(rows, out):
    """``out[:, l]`` = the next K normals of state row l of rows (8, 4), one row after the
    other through :func:`finite.inline_rng.standard_normal_paired` (the sampler's draw)."""
    for lane in range(rows.shape[0]):
        ih, il = rows[lane, 2], rows[lane, 3]
        ah, al, bh, bl, ch, cl = inline_rng.paired_start(rows[lane, 0], rows[lane, 1], ih, il)
        for k in range(out.shape[0]):
            out[k, lane], ah, al, bh, bl = inline_rng.standard_normal_paired(
                ah, al, bh, bl, ch, cl, ih, il)
        rows[lane, 0], rows[lane, 1] = inline_rng.paired_end(ah, al, ih, il)


@njit
def scalar_fill_one_chain(rows, out):
    """:func:`scalar_fill` through :func:`finite.inline_rng.standard_normal` (one LCG chain)."""
    for lane in range(rows.shape[0]):
        h, w, ih, il = rows[lane, 0], rows[lane, 1], rows[lane, 2], rows[lane, 3]
        for k in range(out.shape[0]):
            out[k, lane], h, w = inline_rng.standard_normal(h, w, ih, il)
        rows[lane, 0] = h
        rows[lane, 1] = w


@njit(inline="always")
def _signed_try(r):
    """:func:`_first_try` on the scalar draw's signed table (:func:`sde.pcg64.try_output`):
    (accepted, x)."""
    ok, x, _, _ = pcg64.try_output(r)
    return ok, x


@njit(inline="always")
def _first_try(r):
    """numpy's ziggurat first try on the PCG64 output r: (accepted, x)."""
    idx = np.int64(r & _BYTE)
    r = r >> _U8
    rabs = np.int64((r >> _U1) & _MASK52)
    v = np.float64(rabs) * _WI[idx]
    v = -v if (r & _U1) != np.uint64(0) else v
    return rabs < _KI[idx], v


# ------------------------------------------------------------------ vector IR

def _affine_ir(builder, h, w, mult, ch, cl):
    """``(h:w) · mult + (ch:cl)`` mod 2¹²⁸ on vectors of uint64 halves (the low halves'
    64 × 64 → 128 product from 32 × 32 → 64 pieces): (hi, lo)."""
    v64 = h.type

    def splat(c):
        return ir.Constant(v64, [int(c)] * v64.count)

    m_hi, m_lo = mult >> 64, mult & _MASK64
    lo32 = splat(0xffffffff)
    nlo = builder.add(builder.mul(w, splat(m_lo)), cl)
    carry = builder.zext(builder.icmp_unsigned("<", nlo, cl), v64)
    wl, wh = builder.and_(w, lo32), builder.lshr(w, splat(32))
    p0, p1 = builder.mul(wl, splat(m_lo & 0xffffffff)), builder.mul(wl, splat(m_lo >> 32))
    p2, p3 = builder.mul(wh, splat(m_lo & 0xffffffff)), builder.mul(wh, splat(m_lo >> 32))
    mid = builder.add(builder.add(builder.lshr(p0, splat(32)), builder.and_(p1, lo32)),
                      builder.and_(p2, lo32))
    mulhi = builder.add(builder.add(builder.add(p3, builder.lshr(p1, splat(32))),
                                    builder.lshr(p2, splat(32))), builder.lshr(mid, splat(32)))
    cross = builder.add(builder.mul(h, splat(m_lo)), builder.mul(w, splat(m_hi)))
    return builder.add(builder.add(builder.add(cross, mulhi), ch), carry), nlo


def _xslrr_ir(builder, h, w):
    """PCG64's XSL-RR output of the states (h:w): ``rotr(h ^ w, h >> 58)``."""
    v64 = h.type
    n = v64.count
    x = builder.xor(h, w)
    rot = builder.lshr(h, ir.Constant(v64, [58] * n))
    left = builder.and_(builder.sub(ir.Constant(v64, [64] * n), rot), ir.Constant(v64, [63] * n))
    return builder.or_(builder.lshr(x, rot), builder.shl(x, left))


def _gather_ir(builder, base, idx, vt):
    """``base[idx]`` for a vector of indices (llvm.masked.gather, every lane)."""
    i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
    base_i = builder.ptrtoint(base, i64)
    splat = builder.shuffle_vector(
        builder.insert_element(ir.Constant(idx.type, ir.Undefined), base_i, ir.Constant(i32, 0)),
        ir.Constant(idx.type, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
    addr = builder.add(builder.mul(idx, ir.Constant(idx.type, [8] * LANES)), splat)
    ptrs = builder.inttoptr(addr, ir.VectorType(base.type, LANES))
    elem = "f64" if isinstance(vt.element, ir.DoubleType) else "i64"
    name = f"llvm.masked.gather.v{LANES}{elem}.v{LANES}p0"
    fnty = ir.FunctionType(vt, [ptrs.type, i32, ir.VectorType(i1, LANES), vt])
    fn = builder.module.globals.get(name) or ir.Function(builder.module, fnty, name)
    return builder.call(fn, [ptrs, ir.Constant(i32, 8),
                             ir.Constant(ir.VectorType(i1, LANES), [1] * LANES),
                             ir.Constant(vt, ir.Undefined)])


def _array_ptr(context, builder, aryty, value, offset, vt):
    ary = context.make_array(aryty)(context, builder, value=value)
    p = builder.gep(ary.data, [ir.Constant(ir.IntType(64), offset)])
    return builder.bitcast(p, ir.PointerType(vt))


def make_lane_fill(vector, jump, signed=False):
    """An njit ``fill(hi, lo, ihi, ilo, chi, clo, shi, slo, rs, out)`` drawing ``out`` (K, 8)
    for the eight lanes, ``vector`` uint64 per vector operation, ``jump`` outputs per lane per
    round (arrays from :func:`lane_arrays`); ``signed``: the first try on the signed table."""
    try_ = _signed_try if signed else _first_try
    powers = [pow(pcg64.MULTIPLIER, i, 1 << 128) for i in range(1, jump + 1)]

    @intrinsic
    def _round(typingctx, hi, lo, chi, clo, shi, slo, rs):
        sig = types.none(hi, lo, chi, clo, shi, slo, rs)

        def codegen(context, builder, signature, args):
            v64 = ir.VectorType(ir.IntType(64), vector)

            def ptr(k, off):
                return _array_ptr(context, builder, signature.args[k], args[k], off, v64)

            for part in range(0, LANES, vector):
                h = builder.load(ptr(0, part), align=8)
                w = builder.load(ptr(1, part), align=8)
                builder.store(h, ptr(4, part), align=8)
                builder.store(w, ptr(5, part), align=8)
                for i in range(jump):
                    off = i * LANES + part
                    nh, nl = _affine_ir(builder, h, w, powers[i], builder.load(ptr(2, off), align=8),
                                        builder.load(ptr(3, off), align=8))
                    builder.store(nh, ptr(4, off + LANES), align=8)
                    builder.store(nl, ptr(5, off + LANES), align=8)
                    builder.store(_xslrr_ir(builder, nh, nl), ptr(6, off), align=8)
                builder.store(nh, ptr(0, part), align=8)
                builder.store(nl, ptr(1, part), align=8)
            return context.get_dummy_value()

        return sig, codegen

    @njit
    def fill(hi, lo, ihi, ilo, chi, clo, shi, slo, rs, out):
        K = out.shape[0]
        k = 0
        while k + jump <= K:
            _round(hi, lo, chi, clo, shi, slo, rs)
            for lane in range(LANES):
                for i in range(jump):
                    a, x = try_(rs[i, lane])
                    if a:
                        out[k + i, lane] = x
                        continue
                    # drawn again from the state before this step, then the rest scalar
                    h, w, ih, il = shi[i, lane], slo[i, lane], ihi[lane], ilo[lane]
                    for ii in range(i, jump):
                        out[k + ii, lane], h, w = inline_rng.standard_normal(h, w, ih, il)
                    hi[lane] = h
                    lo[lane] = w
                    break
            k += jump
        for lane in range(LANES):
            h, w, ih, il = hi[lane], lo[lane], ihi[lane], ilo[lane]
            for kk in range(k, K):
                out[kk, lane], h, w = inline_rng.standard_normal(h, w, ih, il)
            hi[lane] = h
            lo[lane] = w

    return fill


@intrinsic
def _step_try_gather(typingctx, hi, lo, ihi, ilo, ph, pl, xs, wi, ki):
    """One step of the eight lanes and the first try, table lookups as gathers, in vector IR:
    the states before the step into ph, pl, x into xs; returns the bit mask of the rejected
    lanes."""
    sig = types.int64(hi, lo, ihi, ilo, ph, pl, xs, wi, ki)

    def codegen(context, builder, signature, args):
        v64, vf = ir.VectorType(ir.IntType(64), LANES), ir.VectorType(ir.DoubleType(), LANES)

        def ptr(k, vt):
            return _array_ptr(context, builder, signature.args[k], args[k], 0, vt)

        def splat(c):
            return ir.Constant(v64, [int(c)] * LANES)

        h = builder.load(ptr(0, v64), align=8)
        w = builder.load(ptr(1, v64), align=8)
        builder.store(h, ptr(4, v64), align=8)
        builder.store(w, ptr(5, v64), align=8)
        nh, nl = _affine_ir(builder, h, w, pcg64.MULTIPLIER, builder.load(ptr(2, v64), align=8),
                            builder.load(ptr(3, v64), align=8))
        builder.store(nh, ptr(0, v64), align=8)
        builder.store(nl, ptr(1, v64), align=8)
        r = _xslrr_ir(builder, nh, nl)
        idx = builder.and_(r, splat(0xff))
        r8 = builder.lshr(r, splat(8))
        rabs = builder.and_(builder.lshr(r8, splat(1)), splat(0x000fffffffffffff))
        neg = builder.icmp_unsigned("!=", builder.and_(r8, splat(1)), splat(0))

        def data(k):
            return context.make_array(signature.args[k])(context, builder, value=args[k]).data

        v = builder.fmul(builder.sitofp(rabs, vf), _gather_ir(builder, data(7), idx, vf))
        builder.store(builder.select(neg, builder.fneg(v), v), ptr(6, vf), align=8)
        rej = builder.icmp_signed(">=", rabs, _gather_ir(builder, data(8), idx, v64))
        return builder.zext(builder.bitcast(rej, ir.IntType(LANES)), ir.IntType(64))

    return sig, codegen


@njit
def gather_fill(hi, lo, ihi, ilo, chi, clo, shi, slo, rs, out):
    """The lanes with the first try in vector IR (gathers), one output per lane per round."""
    ph, pl = shi[0], slo[0]
    for k in range(out.shape[0]):
        xs = out[k]
        bad = _step_try_gather(hi, lo, ihi, ilo, ph, pl, xs, _WI, _KI)
        if bad:
            for lane in range(LANES):
                if (bad >> lane) & 1:       # drawn again from the state before the step
                    xs[lane], hi[lane], lo[lane] = inline_rng.standard_normal(
                        ph[lane], pl[lane], ihi[lane], ilo[lane])


def lane_arrays(rows, jump):
    """(hi, lo, ihi, ilo, chi, clo, shi, slo, rs) of the eight state rows ``rows`` (8, 4):
    states, increments, the offsets ``c_i = inc (1 + M + … + M^{i−1})`` (jump, 8), the
    round's states (jump + 1, 8: the first, then after each step) and outputs (jump, 8)."""
    hi, lo, ihi, ilo = (np.ascontiguousarray(rows[:, i]) for i in range(4))
    chi = np.empty((jump, LANES), dtype=np.uint64)
    clo = np.empty((jump, LANES), dtype=np.uint64)
    for lane in range(LANES):
        inc = (int(ihi[lane]) << 64) | int(ilo[lane])
        c = 0
        for i in range(jump):
            c = (c * pcg64.MULTIPLIER + inc) & ((1 << 128) - 1)
            chi[i, lane], clo[i, lane] = c >> 64, c & _MASK64
    shi, slo = (np.empty((jump + 1, LANES), dtype=np.uint64) for _ in range(2))
    return (hi, lo, ihi, ilo, chi, clo, shi, slo, np.empty((jump, LANES), dtype=np.uint64))


#: (label, kind, vector, jump): kind "scalar" / "scalar-one" (row-state fills, paired / one
#: chain), "lanes", "lanes-signed", "gather" (lane arrays)
VARIANTS = (("scalar, paired (the sampler's draw)", "scalar", 0, 1),
            ("scalar, one chain (finite.inline_rng.standard_normal)", "scalar-one", 0, 1),
            ("lanes 8×1 + gathers", "gather", 8, 1),
            ("lanes 8×1", "lanes", 8, 1),
            ("lanes 8×4", "lanes", 8, 4),
            ("lanes 4×1", "lanes", 4, 1),
            ("lanes 4×2", "lanes", 4, 2),
            ("lanes 4×4", "lanes", 4, 4),
            ("lanes 4×2, signed table", "lanes-signed", 4, 2))


def variant(kind, vector, jump):
    """(fill, make_state): ``fill(*state, out)``; ``make_state(rows)`` from (8, 4) rows."""
    if kind in ("scalar", "scalar-one"):
        return (scalar_fill if kind == "scalar" else scalar_fill_one_chain,
                lambda rows: (rows.copy(),))
    fill = (gather_fill if kind == "gather"
            else make_lane_fill(vector, jump, signed=kind == "lanes-signed"))
    return fill, lambda rows: lane_arrays(rows, jump)


def check(fill, state, gens, K):
    """True if ``fill`` draws each block's ``Generator.standard_normal`` sequence (K each)."""
    out = np.empty((K, LANES))
    fill(*state, out)
    ref = np.stack([g.standard_normal(K) for g in gens], axis=1)
    return np.array_equal(out, ref)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (rougher numbers)")
    args = ap.parse_args(argv)
    repeats = 500 if args.quick else 4000
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# bench_lanes: one thread, CPU seconds; {platform.processor() or platform.machine()}")
    print(f"# load before: {load}")
    print("| variant | ns per normal | scalar / variant |")
    print("|---|---|---|")
    K = 768
    base = None
    best_lane = 0.0
    for label, kind, vector, jump in VARIANTS:
        fill, make_state = variant(kind, vector, jump)
        rows = pcg64.states(block_generators(11, LANES * RNG_BLOCK))
        if not check(fill, make_state(rows), block_generators(11, LANES * RNG_BLOCK), 200_003):
            raise SystemExit(f"{label}: draws differ from numpy's Generator")
        state = make_state(rows)
        out = np.empty((K, LANES))
        best = np.inf
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(repeats):
                fill(*state, out)
            best = min(best, time.process_time() - t0)
        ns = best / (repeats * K * LANES) * 1e9
        base = ns if base is None else base
        print(f"| {label} | {ns:.3f} | {base / ns:.2f} |", flush=True)
        if kind in ("lanes", "gather", "lanes-signed"):
            best_lane = max(best_lane, base / ns)
    verdict = "met" if best_lane >= GOAL else "MISSED"
    print(f"# best lane variant / scalar >= {GOAL} {verdict} ({best_lane:.2f})")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# load after: {load}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
