"""Where the reduced MLP's hidden-Gram pass spends its time, and what overlapping its parts can save.

    .venv/bin/python benchmarks/bench_gram_parts.py [--quick]

The reduced block sampler at m = 3 spends most of a layer in the fused hidden-Gram pass
(:func:`finite.reduced_kernels.hidden_gram_path`): chunks of 128 columns, each drawing its
3 × 128 normals (:func:`finite.inline_rng.standard_normal_paired`), then mapping them
through L and the ReLU and adding the six products to 128 slot sums (vectorised), and at the
end the fold of the six slot sums in slot order (:func:`finite.reduced_kernels.fold_gram3`,
six chains of additions: the order fixes the bits). This benchmark times the parts alone, in
the pass's own loop shapes, one thread, CPU seconds of this process
(``time.process_time``), best of five:

1. **The draw, per normal**, in a 3-row, 128-column chunk loop: the 128-bit LCG step alone
   (its low word converted and stored); the step with PCG64's output and the ziggurat's
   first try but no branch on its acceptance (every first try kept: not a normal draw), on
   one LCG chain and on the paired form's two; the whole draw (the branch to the rare rest
   after a rejected first try, about 1.5 % of outputs, included), one chain
   (:func:`finite.inline_rng.standard_normal`) and paired (the sampler's); and numba's
   ``Generator.standard_normal``.
2. **The pass at n = 256, per path-layer**: the pass itself; its draws alone (two chunks);
   its arithmetic alone (on a fixed chunk); the fold alone; the rest, what putting the three
   together costs beyond their sum (loop transitions, the parts competing for the same
   execution ports); and the fold run inside a chunk's draw loop (one slot of each of the
   six sums per column, the overlap that running two paths of a block in flight would give:
   this path's fold beside the next path's first chunk), as time over that chunk's draws.

The kernels compile at each run (not cached: the test loads this file as a module of its own
name). The interleaved fold is a prototype with the pass's bits (tests/test_bench_gram_parts.py:
the same normals and the same sums as the draws and ``fold_gram3``).
"""
import argparse
import platform
import subprocess
import time

import numpy as np
from numba import njit

from finite import inline_rng
from finite import reduced_kernels as rk
from sde import pcg64
from sde.runs import block_generators

CHUNK = rk.GRAM_CHUNK
WIDTH = 256
SLOPES = (1.0, 1.0 - 1.0 / 16.0)   # the paper grid's ReLU at n = 256: 1 + c / sqrt(n)


@njit(inline="always")
def _lcg_only(hi, lo, inc_hi, inc_lo):
    """The LCG step alone; its low word's top 53 bits as a double: (x, hi, lo)."""
    hi, lo = pcg64._lcg_step(hi, lo, inc_hi, inc_lo)
    return np.float64(np.int64(lo >> np.uint64(11))), hi, lo


@njit(inline="always")
def _first_try_only(hi, lo, inc_hi, inc_lo):
    """PCG64's output and the ziggurat's first try, every try kept (no branch): (x, hi, lo)."""
    r, hi, lo = pcg64.next_uint64(hi, lo, inc_hi, inc_lo)
    _, x, _, _ = pcg64.try_output(r)
    return x, hi, lo


@njit(inline="always")
def _first_try_only_paired(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo):
    """:func:`_first_try_only` on the pair (:func:`sde.pcg64.standard_normal_paired`'s
    states): (x, a_hi, a_lo, b_hi, b_lo)."""
    _, x, _, _ = pcg64.try_output(pcg64.output(a_hi, a_lo))
    n_hi, n_lo = pcg64._lcg_step2(a_hi, a_lo, c_hi, c_lo)
    return x, b_hi, b_lo, n_hi, n_lo


def _chunk_loop(draw):
    """A kernel ``(row, G, reps)`` drawing ``reps`` chunks into G (3, CHUNK) with the
    one-chain ``draw``, column by column as the pass does."""
    @njit
    def run(row, G, reps):
        hi, lo, inc_hi, inc_lo = row[0], row[1], row[2], row[3]
        G0, G1, G2 = G[0], G[1], G[2]
        for _ in range(reps):
            for j in range(CHUNK):
                G0[j], hi, lo = draw(hi, lo, inc_hi, inc_lo)
                G1[j], hi, lo = draw(hi, lo, inc_hi, inc_lo)
                G2[j], hi, lo = draw(hi, lo, inc_hi, inc_lo)
        row[0] = hi
        row[1] = lo
    return run


def _paired_chunk_loop(draw):
    """:func:`_chunk_loop` for a draw on the pair (the paired form's signature)."""
    @njit
    def run(row, G, reps):
        inc_hi, inc_lo = row[2], row[3]
        a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = pcg64.paired_start(row[0], row[1], inc_hi, inc_lo)
        G0, G1, G2 = G[0], G[1], G[2]
        for _ in range(reps):
            for j in range(CHUNK):
                G0[j], a_hi, a_lo, b_hi, b_lo = draw(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                     inc_hi, inc_lo)
                G1[j], a_hi, a_lo, b_hi, b_lo = draw(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                     inc_hi, inc_lo)
                G2[j], a_hi, a_lo, b_hi, b_lo = draw(a_hi, a_lo, b_hi, b_lo, c_hi, c_lo,
                                                     inc_hi, inc_lo)
        row[0], row[1] = pcg64.paired_end(a_hi, a_lo, inc_hi, inc_lo)
    return run


#: the pass's own draw loop: one chunk per rep
paired_chunks = _paired_chunk_loop(inline_rng.standard_normal_paired)


@njit
def _generator_chunks(gen, G, reps):
    """``reps`` chunks of numba ``Generator`` normals into G (3, CHUNK), column by column."""
    for _ in range(reps):
        for j in range(CHUNK):
            G[0, j] = gen.standard_normal()
            G[1, j] = gen.standard_normal()
            G[2, j] = gen.standard_normal()


@njit
def fold_inside_draws(row, G, acc, sums, reps):
    """``reps`` chunks' draws into G (3, CHUNK) (the pass's paired draw loop), each with the
    fold of ``acc`` (6, CHUNK) in slot order into ``sums`` (6) inside the same loop, one slot
    of each sum per column: the same normals as :data:`paired_chunks` and the same sums as
    :func:`finite.reduced_kernels.fold_gram3`."""
    inc_hi, inc_lo = row[2], row[3]
    a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = pcg64.paired_start(row[0], row[1], inc_hi, inc_lo)
    G0, G1, G2 = G[0], G[1], G[2]
    A0, A1, A2, A3, A4, A5 = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    for _ in range(reps):
        t0 = t1 = t2 = t3 = t4 = t5 = 0.0
        for j in range(CHUNK):
            G0[j], G1[j], G2[j], a_hi, a_lo, b_hi, b_lo = inline_rng.normals3_paired(
                a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)
            t0 += A0[j]
            t1 += A1[j]
            t2 += A2[j]
            t3 += A3[j]
            t4 += A4[j]
            t5 += A5[j]
        sums[0], sums[1], sums[2], sums[3], sums[4], sums[5] = t0, t1, t2, t3, t4, t5
    row[0], row[1] = pcg64.paired_end(a_hi, a_lo, inc_hi, inc_lo)


@njit
def _repeat_fold(acc, K, reps):
    for _ in range(reps):
        rk.fold_gram3(acc, CHUNK, WIDTH, K)


@njit
def _repeat_arithmetic(G, acc, L, reps):
    """The pass's arithmetic (:func:`finite.reduced_kernels.relu3_chunk`) on the chunk G
    (3, CHUNK), ``reps`` times: a path-layer of WIDTH columns sets the slot sums from the
    first chunk and adds the others."""
    L3 = (L[0, 0], L[1, 0], L[1, 1], L[2, 0], L[2, 1], L[2, 2])
    for _ in range(reps):
        for k in range(WIDTH // CHUNK):
            rk.relu3_chunk(G, acc, CHUNK, k == 0, L3, SLOPES[0], SLOPES[1])


@njit
def _repeat_pass(row, L, K, G, S, acc, reps):
    for _ in range(reps):
        rk.hidden_gram_path(row, L, True, rk.ACT_RELU, SLOPES[0], SLOPES[1], WIDTH, K, G, S, acc)


def _best(f, *args, repeats=5):
    """Best CPU seconds of ``f(*args)`` over ``repeats`` calls (after one warm-up call)."""
    f(*args)
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        f(*args)
        best = min(best, time.process_time() - t0)
    return best


def _row():
    return pcg64.states(block_generators(1, 1))[0]


def draw_table(reps):
    """ns per normal of each draw variant in the chunk loop: a dict."""
    G = np.empty((3, CHUNK))
    per = 1e9 / (reps * 3 * CHUNK)
    out = {}
    for name, loop in (
            ("LCG step alone, one chain", _chunk_loop(_lcg_only)),
            ("output and first try, no branch, one chain", _chunk_loop(_first_try_only)),
            ("output and first try, no branch, paired", _paired_chunk_loop(_first_try_only_paired)),
            ("whole draw, one chain (inline_rng.standard_normal)",
             _chunk_loop(inline_rng.standard_normal)),
            ("whole draw, paired (the sampler's)", paired_chunks)):
        out[name] = _best(loop, _row(), G, reps) * per
    gen = block_generators(1, 1)[0]
    out["numba Generator.standard_normal"] = _best(_generator_chunks, gen, G, reps) * per
    return out


def pass_table(reps):
    """µs per n = 256 path-layer of the pass and its parts: a dict."""
    L = np.linalg.cholesky(np.full((3, 3), 0.2) + 0.8 * np.eye(3))
    K, G, S = np.empty((3, 3)), np.empty((3, CHUNK)), np.empty((3, CHUNK))
    acc = np.random.default_rng(0).random((6, CHUNK))
    chunks = WIDTH // CHUNK
    per = 1e6 / reps
    t_pass = _best(_repeat_pass, _row(), L, K, G, S, np.empty((6, CHUNK)), reps) * per
    t_draw = _best(paired_chunks, _row(), G, reps * chunks) * per
    t_fold = _best(_repeat_fold, acc, K, reps) * per
    t_inside = _best(fold_inside_draws, _row(), G, acc, np.zeros(6), reps) * per
    Gn = np.random.default_rng(2).standard_normal((3, CHUNK))
    t_arith = _best(_repeat_arithmetic, Gn, np.empty((6, CHUNK)), L, reps) * per
    return {"pass": t_pass, "draws alone": t_draw, "arithmetic alone": t_arith,
            "fold alone": t_fold,
            "the rest (pass - the three alone)": t_pass - t_draw - t_arith - t_fold,
            "fold inside a chunk's draws (time over the draws)": t_inside - t_draw / chunks}


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (rougher numbers)")
    args = ap.parse_args(argv)
    reps = 2000 if args.quick else 20000
    print(f"# bench_gram_parts: one thread, CPU seconds; "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"# load before: {load()}")
    print(f"\n## the draw, per normal ({reps} chunks of 3 x {CHUNK})")
    print("| draw | ns per normal |\n|---|---|")
    for name, t in draw_table(reps).items():
        print(f"| {name} | {t:.2f} |")
    print(f"\n## the hidden-Gram pass at n = {WIDTH}, per path-layer ({reps} passes)")
    print("| part | µs |\n|---|---|")
    parts = pass_table(reps)
    for name, t in parts.items():
        print(f"| {name} | {t:.3f} |")
    inside = parts["fold inside a chunk's draws (time over the draws)"]
    alone = parts["fold alone"]
    print(f"# the fold costs {inside:.3f} µs inside a chunk's draws and {alone:.3f} µs alone: "
          f"running two paths in flight would {'save' if inside < alone else 'cost'} "
          f"{abs(alone - inside):.3f} µs per path-layer")
    print(f"# load after: {load()}")


if __name__ == "__main__":
    main()
