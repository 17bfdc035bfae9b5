"""Benchmark of the masked SDE kernels (not a test): ``python benchmarks/bench_masked.py``.

Path-steps per second of :func:`sde.simulate` for shaped attention (γ = 0.5, τ0 = 1, H = 1,
V0 equicorrelated ρ0 = 0.2, T = 1, dt = 0.01, 100 Euler–Maruyama steps, only the first and
last steps saved) with the complete mask and with the causal, sliding (w = 2) and sparse
(k = 2) masks (docs/theory.md §3.5), all on the lane kernels of :mod:`sde._kernels`, at
m ∈ {3, 8, 16}, in the same run: the kernels are warmed up first, then every configuration
is timed ``--repeats`` times in interleaved order and the best time is kept (the machine is
shared). Rates per second of wall time and per CPU-second (all threads summed: less
sensitive to other load). The complete mask also runs on the per-path loop
``simulate_blocks_per_path`` (same results). Goal: every masked run ≥ 0.75 of the complete
mask's speed (lanes, per CPU-second), at every m. Results: docs/benchmarks.md.
"""
import argparse
import importlib
import math
import os
import platform
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


GOAL = 0.75


def run(model, V0, n_paths, per_path=False):
    """(wall s, CPU s, dead paths) of one run; ``per_path``: the per-path loop."""
    K = importlib.import_module("sde._kernels")
    lanes = K.simulate_blocks
    if per_path:
        K.simulate_blocks = K.simulate_blocks_per_path
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        ds = sde.simulate(model, V0, t_end=T_END, dt=DT, n_paths=n_paths, seed=1,
                          save_every=10 ** 9, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0, int(ds.attrs["n_dead"])
    finally:
        K.simulate_blocks = lanes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the path counts")
    ap.add_argument("--ms", type=int, nargs="+", default=list(PATHS), help="token counts m")
    args = ap.parse_args()
    n_steps = int(round(T_END / DT))
    print(f"# numba {numba.__version__}, numpy {np.__version__}, threads "
          f"{numba.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows, goals = [], []
    for m in args.ms:
        paths = max(8, int(PATHS[m] * args.scale))
        V0 = sde.equicorrelated(m, RHO0)
        models = {k: sde.ShapedAttention(GAMMA, TAU0, **kw) for k, kw in MASKS.items()}
        for k, model in models.items():
            run(model, V0, 8, k == PER_PATH)  # compile / load from cache
        wall = {k: math.inf for k in models}
        cpu = {k: math.inf for k in models}
        dead = {}
        for _ in range(args.repeats):
            for k, model in models.items():
                w, c, dead[k] = run(model, V0, paths, k == PER_PATH)
                wall[k] = min(wall[k], w)
                cpu[k] = min(cpu[k], c)
        rate = {k: paths * n_steps / wall[k] for k in models}
        crate = {k: paths * n_steps / cpu[k] for k in models}
        for k in models:
            rows.append((m, k, paths, rate[k], crate[k], rate[k] / rate["complete"],
                         crate[k] / crate["complete"], dead[k]))
            if k not in ("complete", PER_PATH):
                goals.append((m, k, crate[k] / crate["complete"]))
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| m | mask | paths | path-steps/s (wall) | per CPU-s | vs complete (wall) "
          "| vs complete (CPU) | dead |")
    print("|---|------|-------|---|---|---|---|------|")
    for m, k, paths, r, cr, rel, crel, d in rows:
        print(f"| {m} | {k} | {paths} | {r:.3g} | {cr:.3g} | {rel:.2f} | {crel:.2f} | {d} |")
    for m, k, x in goals:
        print(f"goal at m = {m}, {k}: >= {GOAL} of the complete mask (per CPU-second): "
              f"{'met' if x >= GOAL else 'MISSED'} ({x:.2f})")


if __name__ == "__main__":
    main()
