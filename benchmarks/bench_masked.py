"""Benchmark of the masked SDE kernel (not a test): ``python benchmarks/bench_masked.py``.

Path-steps per second of :func:`sde.simulate` for shaped attention (γ = 0.5, τ0 = 1, H = 1,
V0 equicorrelated ρ0 = 0.2, T = 1, dt = 0.01, 100 Euler–Maruyama steps, only the first and
last steps saved) with the complete mask (the complete-mask kernel, :mod:`sde._kernels`) and
with the causal, sliding (w = 2) and sparse (k = 2) masks (the masked kernel,
:mod:`sde._kernels_masked`, docs/theory.md §3.5), at m ∈ {3, 8, 16}, in the same run: the
kernels are warmed up first, then every configuration is timed ``--repeats`` times in
interleaved order and the best wall time is kept (the machine is shared). The complete mask
runs twice: on the lane kernel ``sde.simulate`` uses, and on the per-path kernel
``simulate_blocks_scalar`` (same results), which has the masked kernel's structure (one path
at a time per thread). Results: docs/benchmarks.md.
"""
import argparse
import math
import platform
import sys
import time

import numba
import numpy as np

import sde

GAMMA, TAU0, RHO0, T_END, DT = 0.5, 1.0, 0.2, 1.0, 0.01
PER_PATH = "complete, per-path kernel"
MASKS = {
    "complete": {},
    PER_PATH: {},
    "causal": dict(mask="causal"),
    "sliding w=2": dict(mask="sliding", window=2),
    "sparse k=2": dict(mask="sparse", sparse_k=2),
}
PATHS = {3: 40_000, 8: 8_000, 16: 2_000}


def run(model, V0, n_paths, per_path=False):
    """(wall s, dead paths) of one run; ``per_path``: the complete-mask per-path kernel."""
    K = sys.modules["sde._kernels"]
    lanes = K.simulate_blocks
    if per_path:
        K.simulate_blocks = K.simulate_blocks_scalar
    try:
        t0 = time.perf_counter()
        ds = sde.simulate(model, V0, t_end=T_END, dt=DT, n_paths=n_paths, seed=1,
                          save_every=10 ** 9, progress=False)
        return time.perf_counter() - t0, int(ds.attrs["n_dead"])
    finally:
        K.simulate_blocks = lanes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the path counts")
    args = ap.parse_args()
    n_steps = int(round(T_END / DT))
    print(f"# numba {numba.__version__}, numpy {np.__version__}, threads "
          f"{numba.get_num_threads()}, {platform.processor() or platform.machine()}")
    rows = []
    for m, paths in PATHS.items():
        paths = max(8, int(paths * args.scale))
        V0 = sde.equicorrelated(m, RHO0)
        models = {k: sde.ShapedAttention(GAMMA, TAU0, **kw) for k, kw in MASKS.items()}
        for k, model in models.items():
            run(model, V0, 8, k == PER_PATH)  # compile / load from cache
        best = {k: math.inf for k in models}
        dead = {}
        for _ in range(args.repeats):
            for k, model in models.items():
                wall, dead[k] = run(model, V0, paths, k == PER_PATH)
                best[k] = min(best[k], wall)
        rate = {k: paths * n_steps / best[k] for k in models}
        for k in models:
            rows.append((m, k, paths, rate[k], rate["complete"] / rate[k],
                         rate[PER_PATH] / rate[k], dead[k]))
    print("| m | mask | paths | path-steps/s | slowdown vs complete (lanes) "
          "| slowdown vs complete (per-path) | dead |")
    print("|---|------|-------|--------------|---|---|------|")
    for m, k, paths, r, slow, slow_pp, d in rows:
        print(f"| {m} | {k} | {paths} | {r:.3g} | {slow:.2f}× | {slow_pp:.2f}× | {d} |")


if __name__ == "__main__":
    main()
