"""Per-layer, per-path time of the literal vs the exact reduced finite-network sampler.

    .venv/bin/python benchmarks/bench_finite.py [--quick]

m = 8 tokens, one head, γ = 0.5, τ0 = 1, ρ0 = 0.2; attention and block (attention + MLP per
layer); n ∈ {64, 256, 1024, 4096} (literal up to 1024). Both samplers run through
:func:`finite.sample` with one worker thread, so the ratios are per core and measured in the
same run; each timing is the best of ``REPEATS`` runs after a warm-up (numba compile).
"""
import argparse
import platform
import time

import numpy as np

from finite import sample
from sde import ShapedAttention, ShapedBlock, equicorrelated

M = 8
WIDTHS = (64, 256, 1024, 4096)
LITERAL_MAX = 1024
REPEATS = 2


def _time(model, V0, width, sampler, n_paths, depth):
    t0 = time.perf_counter()
    sample(model, V0, width=width, n_paths=n_paths, seed=1, depth=depth, sampler=sampler,
           threads=1, progress=False, save_every=depth)
    return (time.perf_counter() - t0) / (n_paths * depth)


def per_path_layer(model, V0, width, sampler, budget_s):
    """Best-of-REPEATS seconds per path-layer, the run sized from a probe to ~budget_s.

    Reduced: 2048 paths (8 RNG blocks, the sampler's vectorisation width) and as many
    layers as fit; literal: 2 layers and as many paths as fit (at least 2).
    """
    if sampler == "reduced":
        n_paths = 2048
        _time(model, V0, width, sampler, n_paths, 1)            # warm-up / compile
        per = _time(model, V0, width, sampler, n_paths, 1)
        depth = int(min(50, max(1, budget_s / (per * n_paths))))
    else:
        depth = 2                                               # amortise buffer set-up
        per = _time(model, V0, width, sampler, 2, 1)
        n_paths = int(min(4096, max(2, budget_s / (2 * per))))
    return min(_time(model, V0, width, sampler, n_paths, depth) for _ in range(REPEATS))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller budgets (rougher numbers)")
    args = ap.parse_args(argv)
    budget = 0.5 if args.quick else 2.0
    V0 = equicorrelated(M, 0.2)
    models = {"attention": ShapedAttention(0.5, 1.0), "block": ShapedBlock(0.5, 1.0)}
    print(f"# bench_finite: m = {M}, H = 1, one thread; {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    print(f"{'arch':<10} {'n':>5} {'literal µs/path-layer':>22} {'reduced µs/path-layer':>22} "
          f"{'literal/reduced':>16}")
    for arch, model in models.items():
        for n in WIDTHS:
            red = per_path_layer(model, V0, n, "reduced", budget)
            if n <= LITERAL_MAX:
                lit = per_path_layer(model, V0, n, "literal", budget)
                lit_s, ratio = f"{lit * 1e6:22.1f}", f"{lit / red:16.0f}"
            else:
                lit_s, ratio = f"{'—':>22}", f"{'—':>16}"
            print(f"{arch:<10} {n:>5} {lit_s} {red * 1e6:22.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
