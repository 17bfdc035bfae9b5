"""`covsde compare` over every common time of the demo's finite and SDE files vs a per-draw loop.

    python benchmarks/bench_compare.py [--demo-dir runs/demo] [--legacy-rows 4]

Needs the demo's ``finite.nc`` and ``sde.nc`` (``make demo``; or they are made here in
about 2 min: SDE 10⁴ paths, finite n = 200 with 2000 paths, shaped block, T = 1).

**after**: :func:`compare.distances.distances` on all common times (101 rows), default
``n_boot = 200`` (numba permutation kernel, order-statistic bootstrap of the quantiles).
**before**: a per-draw Python loop, the baseline (200 bootstrap draws, each
resampling both sides with ``rng.choice`` and calling scipy's KS and W1, plus 200 floor
draws), copied below, timed on ``--legacy-rows`` rows spread over the times and
extrapolated per row. Both in this one process; the ratio is per row.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
import scipy.stats

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from compare.distances import distances, match_times  # noqa: E402
from compare.statistics import compute_stat  # noqa: E402
from sde.io import read_dataset  # noqa: E402


def _ks_statistic(x, y):
    x = np.sort(x)
    y = np.sort(y)
    z = np.concatenate([x, y])
    return float(np.max(np.abs(np.searchsorted(x, z, side="right") / x.size
                               - np.searchsorted(y, z, side="right") / y.size)))


def legacy_row(xa, xb, rng, n_boot=200):
    """The baseline for one row: per-draw percentile bootstrap + floor loop."""
    xa = xa[np.isfinite(xa)]
    xb = xb[np.isfinite(xb)]
    scipy.stats.ks_2samp(xa, xb)
    scipy.stats.wasserstein_distance(xa, xb)
    for _ in range(n_boot):
        xs = rng.choice(xa, xa.size)
        ys = rng.choice(xb, xb.size)
        _ks_statistic(xs, ys)
        scipy.stats.wasserstein_distance(xs, ys)
        y1 = rng.choice(xb, xa.size)
        y2 = rng.choice(xb, xb.size)
        _ks_statistic(y1, y2)
        scipy.stats.wasserstein_distance(y1, y2)
    np.quantile(xa, (0.1, 0.25, 0.5, 0.75, 0.9))


def demo_files(d):
    fin, sde_path = os.path.join(d, "finite.nc"), os.path.join(d, "sde.nc")
    if not (os.path.exists(fin) and os.path.exists(sde_path)):
        from compare.demo import run_demo

        print(f"making the demo datasets under {d} ...", flush=True)
        for line in run_demo(d):
            pass
    return read_dataset(fin), read_dataset(sde_path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo-dir", default="runs/demo")
    p.add_argument("--legacy-rows", type=int, default=4)
    args = p.parse_args()
    a, b = demo_files(args.demo_dir)
    pairs, _ = match_times(a, b)
    print(f"finite {a.sizes['path']} paths, SDE {b.sizes['path']} paths, "
          f"{len(pairs)} common times; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.1f}")
    # warm-up (numba compile / cache load), not timed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distances(a, b, times=[pairs[1][2]], n_boot=40, progress=False)
        t0 = time.perf_counter()
        distances(a, b, n_boot=200, progress=False)
        after = time.perf_counter() - t0
    xa = compute_stat(a["V"], "corr:0,1").values
    xb = compute_stat(b["V"], "corr:0,1").values
    rng = np.random.default_rng(0)
    pick = [pairs[int(i)] for i in np.linspace(1, len(pairs) - 1, args.legacy_rows)]
    t0 = time.perf_counter()
    for ia, ib, _ in pick:
        legacy_row(xa[:, ia], xb[:, ib], rng)
    before_row = (time.perf_counter() - t0) / len(pick)
    after_row = after / len(pairs)
    print(f"after : {after:.1f} s for {len(pairs)} rows ({after_row:.3f} s/row)")
    print(f"before: {before_row:.2f} s/row on {len(pick)} rows -> "
          f"{before_row * len(pairs):.0f} s for {len(pairs)} rows (extrapolated)")
    print(f"ratio before/after per row: {before_row / after_row:.0f}x")


if __name__ == "__main__":
    main()
