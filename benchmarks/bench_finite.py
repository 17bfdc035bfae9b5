"""Finite-network samplers: the reduced sampler against its RNG floor, literal vs reduced, and
the literal sampler's GFLOP/s against numpy's matmul.

    .venv/bin/python benchmarks/bench_finite.py [--quick]

Three tables, every ratio measured in the same run, one thread (``threads=1``), times in CPU
seconds of this process (``time.process_time``: other jobs on a shared machine inflate them
less than wall time; BLAS is limited to one thread):

1. **RNG floor.** The reduced block sampler (shaped block γ = 0.3536, τ0 = 1, c₊ = 0, c₋ = −1,
   m = 3, ρ0 = 0.2, 2048 paths) per path-layer, against the time to draw the m·n normals of
   its MLP hidden pre-activations — the draws it cannot avoid — with numba's ``Generator``
   (``gen.standard_normal()`` in an njit loop) and with the inlined PCG64 + ziggurat its
   hidden Gram draws through (:func:`finite.inline_rng.standard_normal_paired`, the draws
   of :mod:`sde.pcg64`). A ratio floor/sampler ≥ 1 means the sampler costs less than drawing
   its normals with numba's Generator. Beside it, the time of the fused hidden-Gram
   pass alone (the same m·n draws mapped through L, the ReLU and summed; L fixed) and the
   rest of the layer (sampler − pass: factorisations, the attention sub-layer, the O(m³)
   draws and residual updates, the per-layer Python).
2. **Literal vs reduced**, m = 8, one head: µs per path-layer.
3. **Literal GFLOP/s**: the literal sampler's flops (its cost model's matrix products) per
   CPU second, against ``numpy.matmul`` on the shape of its products (the weight products
   X W, (p, m, n) @ (n, n)); also the share of its time spent drawing the n² weight normals
   (``finite.literal.draw_weights``) and the GFLOP/s of the rest.
"""
import argparse
import os
import platform
import subprocess
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from finite import inline_rng  # noqa: E402
from finite import layers as fl  # noqa: E402
from finite import literal as lit  # noqa: E402
from finite import reduced_kernels as rk  # noqa: E402
from finite import sample  # noqa: E402
from sde import ShapedAttention, ShapedBlock, equicorrelated, pcg64  # noqa: E402
from sde.runs import block_generators  # noqa: E402

M = 8
WIDTHS = (64, 256, 1024, 4096)
LITERAL_MAX = 1024
REPEATS = 2
FLOOR_M, FLOOR_WIDTHS, FLOOR_PATHS = 3, (256, 1024), 2048
GRID_MODEL = ShapedBlock(0.3536, 1.0, 0.0, -1.0)


@njit(cache=True)
def _generator_floor(gens, count):
    """``count`` normals from each Generator of ``gens`` through numba's Generator."""
    acc = 0.0
    for g in gens:
        for _ in range(count):
            acc += g.standard_normal()
    return acc


@njit(cache=True)
def _inline_floor(rows, count):
    """``count`` normals from each PCG64 state row through the hidden Gram's inlined draw
    (the paired form, :func:`finite.inline_rng.standard_normal_paired`)."""
    acc = 0.0
    for k in range(rows.shape[0]):
        inc_hi, inc_lo = rows[k, 2], rows[k, 3]
        a_hi, a_lo, b_hi, b_lo, c_hi, c_lo = inline_rng.paired_start(rows[k, 0], rows[k, 1],
                                                                     inc_hi, inc_lo)
        for _ in range(count):
            x, a_hi, a_lo, b_hi, b_lo = inline_rng.standard_normal_paired(
                a_hi, a_lo, b_hi, b_lo, c_hi, c_lo, inc_hi, inc_lo)
            acc += x
        rows[k, 0], rows[k, 1] = inline_rng.paired_end(a_hi, a_lo, inc_hi, inc_lo)
    return acc


@njit(cache=True)
def _gram_pass(rows, L, width, per_block, a1, a2):
    """The reduced MLP's fused hidden-Gram pass alone (:func:`finite.reduced_kernels.
    hidden_gram_path`), ``per_block`` times on each RNG block's stream, L fixed."""
    m = L.shape[0]
    K = np.empty((m, m))
    G = np.empty((m, rk.GRAM_CHUNK))
    S = np.empty((m, rk.GRAM_CHUNK))
    acc = np.empty((m * (m + 1) // 2, rk.GRAM_CHUNK))
    tot = 0.0
    for k in range(rows.shape[0]):
        for _ in range(per_block):
            rk.hidden_gram_path(rows[k], L, True, rk.ACT_RELU, a1, a2, width, K, G, S, acc)
            tot += K[0, 0]
    return tot


def _cpu(f, *a, **kw):
    t0 = time.process_time()
    f(*a, **kw)
    return time.process_time() - t0


def floor_row(width, depth):
    """(sampler, generator floor, inline floor, hidden-Gram pass) CPU seconds for
    FLOOR_PATHS paths × depth."""
    V0 = equicorrelated(FLOOR_M, 0.2)
    kw = dict(width=width, n_paths=FLOOR_PATHS, seed=1, threads=1, progress=False)
    sample(GRID_MODEL, V0, depth=1, **kw)                                  # compile
    gens = block_generators(1, FLOOR_PATHS)
    per_block = FLOOR_PATHS // len(gens) * FLOOR_M * width * depth
    grams = FLOOR_PATHS // len(gens) * depth
    L = np.linalg.cholesky(V0)
    a1, a2 = (1.0 + c / np.sqrt(width) for c in (GRID_MODEL.c_plus, GRID_MODEL.c_minus))
    _generator_floor(tuple(gens[:1]), 10)
    _inline_floor(pcg64.states(gens[:1]), 10)
    _gram_pass(pcg64.states(gens[:1]), L, width, 1, a1, a2)
    best = [np.inf] * 4
    for _ in range(REPEATS):
        times = (_cpu(sample, GRID_MODEL, V0, depth=depth, save_every=depth, **kw),
                 _cpu(_generator_floor, tuple(gens), per_block),
                 _cpu(_inline_floor, pcg64.states(gens), per_block),
                 _cpu(_gram_pass, pcg64.states(gens), L, width, grams, a1, a2))
        best = [min(b, t) for b, t in zip(best, times)]
    return best


def _time(model, V0, width, sampler, n_paths, depth):
    t = _cpu(sample, model, V0, width=width, n_paths=n_paths, seed=1, depth=depth,
             sampler=sampler, threads=1, progress=False, save_every=depth)
    return t / (n_paths * depth)


def per_path_layer(model, V0, width, sampler, budget_s):
    """Best-of-REPEATS CPU seconds per path-layer, the run sized from a probe to ~budget_s.

    Reduced: 2048 paths and as many layers as fit; literal: 2 layers and as many paths as
    fit (at least 2).
    """
    if sampler == "reduced":
        n_paths = 2048
        _time(model, V0, width, sampler, n_paths, 1)            # warm-up / compile
        per = _time(model, V0, width, sampler, n_paths, 1)
        depth = int(min(50, max(1, budget_s / (per * n_paths))))
    else:
        depth = 2
        per = _time(model, V0, width, sampler, 2, 1)
        n_paths = int(min(4096, max(2, budget_s / (2 * per))))
    return min(_time(model, V0, width, sampler, n_paths, depth) for _ in range(REPEATS))


def literal_gflops(model, width, n_paths=8):
    """(sampler GFLOP/s, GFLOP/s without its weight draws, numpy matmul GFLOP/s, draw share)
    of one literal layer at m = M; without the draws NaN when the draws, timed alone, took
    at least the layer's time (a loaded machine)."""
    V0 = equicorrelated(M, 0.2)
    bound = fl.bind(model, width, model.heads, width // model.heads)
    flops = sum(b.literal_cost(M)[1] for b in bound) * n_paths
    kw = dict(width=width, seed=1, depth=1, sampler="literal", threads=1, progress=False)
    sample(model, V0, n_paths=2, **kw)
    t_lit = min(_cpu(sample, model, V0, n_paths=n_paths, **kw) for _ in range(REPEATS))
    gen = np.random.default_rng(2)
    t_draw = min(sum(_cpu(lit.draw_weights, gen, n_paths, b.literal_shapes()) for b in bound)
                 for _ in range(REPEATS))
    X = np.random.default_rng(0).standard_normal((n_paths, M, width))
    W = np.random.default_rng(1).standard_normal((n_paths, width, width))
    t_mm = min(_cpu(np.matmul, X, W) for _ in range(REPEATS + 1))
    g_mm = 2.0 * M * width * width * n_paths / t_mm / 1e9
    rest = t_lit - t_draw     # not separable when the draws, timed alone, took longer
    return (flops / t_lit / 1e9, flops / rest / 1e9 if rest > 0 else float("nan"), g_mm,
            t_draw / t_lit)


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--quick", action="store_true", help="smaller budgets (rougher numbers)")
    args = ap.parse_args(argv)
    budget = 0.5 if args.quick else 2.0
    print(f"# bench_finite: one thread, CPU seconds; {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    print(f"# load before: {load()}")

    print(f"\n## reduced block sampler vs RNG floor: m = {FLOOR_M}, {FLOOR_PATHS} paths")
    print("| n | depth | sampler µs/path-layer | numba Generator floor µs | inline floor µs "
          "| Generator floor / sampler | inline floor / sampler | hidden-Gram pass µs "
          "| rest of the layer µs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in FLOOR_WIDTHS:
        depth = (16 if args.quick else 64) * 1024 // n
        t_s, t_g, t_i, t_k = floor_row(n, depth)
        per = 1e6 / (FLOOR_PATHS * depth)
        print(f"| {n} | {depth} | {t_s * per:.2f} | {t_g * per:.2f} | {t_i * per:.2f} "
              f"| {t_g / t_s:.2f} | {t_i / t_s:.2f} | {t_k * per:.2f} | {(t_s - t_k) * per:.2f} |",
              flush=True)
        verdict = "met" if t_g / t_s >= 1.0 else "MISSED"
        print(f"# n = {n}: goal Generator floor / sampler >= 1.0 {verdict} ({t_g / t_s:.2f})")

    V0 = equicorrelated(M, 0.2)
    models = {"attention": ShapedAttention(0.5, 1.0), "block": ShapedBlock(0.5, 1.0)}
    print(f"\n## literal vs reduced: m = {M}, H = 1")
    print("| arch | n | literal µs/path-layer | reduced µs/path-layer | literal / reduced |")
    print("|---|---|---|---|---|")
    for arch, model in models.items():
        for n in WIDTHS:
            red = per_path_layer(model, V0, n, "reduced", budget)
            if n <= LITERAL_MAX:
                lit = per_path_layer(model, V0, n, "literal", budget)
                lit_s, ratio = f"{lit * 1e6:.1f}", f"{lit / red:.0f}"
            else:
                lit_s, ratio = "—", "—"
            print(f"| {arch} | {n} | {lit_s} | {red * 1e6:.2f} | {ratio} |", flush=True)

    print(f"\n## literal sampler GFLOP/s vs numpy matmul (m = {M}, 8 paths, one layer)")
    print("| arch | n | literal GFLOP/s | share of time drawing weights | literal without the "
          "draws GFLOP/s | matmul (p, m, n) @ (n, n) GFLOP/s | literal / matmul | "
          "without draws / matmul |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, model in models.items():
        for n in (256, 1024):
            g_lit, g_nodraw, g_mm, share = literal_gflops(model, n)
            nodraw = ("—", "—") if np.isnan(g_nodraw) else (f"{g_nodraw:.1f}",
                                                              f"{g_nodraw / g_mm:.2f}")
            print(f"| {arch} | {n} | {g_lit:.2f} | {share:.2f} | {nodraw[0]} | {g_mm:.1f} "
                  f"| {g_lit / g_mm:.2f} | {nodraw[1]} |", flush=True)
    print(f"\n# load after: {load()}")


if __name__ == "__main__":
    main()
