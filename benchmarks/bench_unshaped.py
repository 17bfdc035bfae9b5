"""Per-layer, per-path cost of the unshaped architectures (literal sampler) and, beside them,
the shaped attention/block with both samplers, at m ∈ {16, 64}, n ∈ {64, 256, 1024}.

    .venv/bin/python benchmarks/bench_unshaped.py [--quick]

Each architecture runs through :func:`finite.sample` with one worker thread (per-core cost);
each timing is the best of two runs after a warm-up, sized to about ``--budget`` seconds. The
archs with LayerNorm have no reduced sampler (LN breaks rotation invariance; docs/theory.md
§5.8): "—" in the reduced column. The last column is the ratio to shaped attention's literal
cost measured in the same run.
"""
import argparse
import os
import platform
import time

import numpy as np

from finite import sample
from finite.layers import bind
from finite.unshaped import AttentionOnly, PostLN, PreLN, Vanilla
from sde import ShapedAttention, ShapedBlock

MODELS = [
    ("shaped attention", ShapedAttention(0.5, 1.0)),
    ("shaped block", ShapedBlock(0.5, 1.0)),
    ("post-ln", PostLN()),
    ("pre-ln", PreLN()),
    ("attention-only", AttentionOnly()),
    ("attention-only + LN", AttentionOnly(layernorm=True)),
    ("vanilla e-spa", Vanilla(attention="e-spa")),
    ("vanilla value-skipinit", Vanilla(attention="value-skipinit")),
]


def _run(model, m, n, sampler, paths, depth):
    t0 = time.perf_counter()
    sample(model, np.eye(m), width=n, n_paths=paths, seed=1, depth=depth, sampler=sampler,
           threads=1, progress=False, save_every=depth)
    return (time.perf_counter() - t0) / (paths * depth)


def per_path_layer(model, m, n, sampler, budget):
    depth = 2
    probe = _run(model, m, n, sampler, 2, depth)               # warm-up
    paths = int(max(2, min(4096, budget / max(probe * depth, 1e-9))))
    return min(_run(model, m, n, sampler, paths, depth) for _ in range(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="n ∈ {64, 256}, small budget")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per timing")
    args = ap.parse_args()
    widths = (64, 256) if args.quick else (64, 256, 1024)
    budget = 0.3 if args.quick else args.budget
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; one worker thread")
    for _, model in MODELS:                     # compile every kernel before timing anything
        for sampler in ("literal", "reduced"):
            try:
                _run(model, 16, 64, sampler, 2, 1)
            except Exception:                   # noqa: BLE001 - no reduced sampler: skip
                pass
    print("| m | n | architecture | literal ms/path-layer | reduced ms/path-layer | "
          "literal ÷ shaped-attention literal |")
    print("|---|---|---|---|---|---|")
    for m in (16, 64):
        for n in widths:
            if n < m:
                continue
            base = None
            for name, model in MODELS:
                lit = per_path_layer(model, m, n, "literal", budget)
                reducible = all(b.has_reduced for b in bind(model, n, model.heads, n))
                red = per_path_layer(model, m, n, "reduced", budget) if reducible else None
                base = base or lit
                red_s = f"{1e3 * red:.3g}" if red is not None else "—"
                print(f"| {m} | {n} | {name} | {1e3 * lit:.3g} | {red_s} | {lit / base:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
