"""Benchmark: the paper grid as a Dask sweep (--workers 2) vs a single-process loop.

The grid: shaped block of the example config (γ = 0.3536, τ0 = 1, c₊ = 0, c₋ = −1), m = 3,
ρ0 = 0.2, d/n ∈ {0.25, 0.5, 0.75, 1} × width n ∈ {64, 128, 256, 512, 1024}; per cell 10⁴ SDE
paths (dt = 0.01) and 10⁴ reduced finite paths, compared on corr:0,1 and V:0,0 (n_boot 50).

Both runs are fresh processes (imports, numba cache loading and, for the sweep, the cluster
start-up are included): ``covsde sweep CONFIG --out STORE --workers 2`` and a loop calling
:func:`compare.sweep.cell.run_cell` on every cell in one process (numba threads = all cores;
cells sharing a sample one after the other, as ``covsde sweep`` runs them in process).
The loop's distances are checked equal to the sweep's (same seeds). Prints both wall times,
their CPU times (user + system of the processes, Dask workers included: on a machine shared
with other jobs the wall time grows with the load, the CPU time much less; CPU / cores is
the wall time a quiet machine could reach with both cores busy) and the machine load
(``uptime``)::

    python benchmarks/bench_sweep.py                     # the paper grid, one sample per cell
    python benchmarks/bench_sweep.py --share             # one SDE sample, one finite per width
    python benchmarks/bench_sweep.py --paths 1000 --widths 64 128   # a small check

``--share`` adds ``share = ["ratio", "width"]`` to the SDE source (one sample to t = 1 for the
whole grid, saved at every d/n) and ``share = ["ratio"]`` to the finite source (one sample per
width to depth n, saved at every d/n): every cell still compares 10⁴ + 10⁴ paths of the same
laws, but the finite work drops from Σ_cells (d/n) n² to Σ_n n² (2.5× less on this grid).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CONFIG = """\
seed = 7
stats = ["corr:0,1", "V:0,0"]

[model]
arch = "block"
gamma = 0.3536
tau0 = 1.0
c_plus = 0.0
c_minus = -1.0

[initial]
tokens = 3
rho0 = 0.2

[grid]
ratio = {ratios}
width = {widths}

[sources.sde]
paths = {paths}
dt = 0.01
{sde_share}
[sources.finite]
sampler = "reduced"
paths = {paths}
{finite_share}
[compare]
n_boot = 50
"""

#: the paper grid's goal: at most 3 minutes of wall time on the 2-core machine, either run
GOAL_S = 180.0

LOOP = """
import json, os, sys, time
t0 = time.perf_counter()
from compare.sweep.cell import run_cell
from compare.sweep.config import cells, load_config
specs = cells(load_config(sys.argv[1]))
# cells that share a sample follow each other (run_cell keeps the last few in memory)
specs.sort(key=lambda sp: [sp.get("shared", {}).get(n, {}).get("file", "")
                           for n in ("finite", "sde")])
out = {}
for spec in specs:
    summary, _ = run_cell(spec, threads=os.cpu_count())
    out[spec["id"]] = summary["ks"].values.tolist()
json.dump(out, open(sys.argv[2], "w"))
"""


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def children_cpu():
    """CPU seconds (user + system) of the finished child processes and their waited-for
    descendants (the Dask workers of ``covsde sweep``)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd):
    """(wall seconds, CPU seconds) of a child process run to completion."""
    c0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0, children_cpu() - c0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=10_000)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--share", action="store_true",
                   help="one SDE sample for the whole grid (share = [\"ratio\", \"width\"]) "
                        "and one finite sample per width (share = [\"ratio\"])")
    p.add_argument("--skip-loop", action="store_true")
    p.add_argument("--skip-sweep", action="store_true",
                   help="only the single-process loop (no distance check against the sweep)")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_sweep_")
    cfg = os.path.join(tmp, "grid.toml")
    with open(cfg, "w") as fh:
        fh.write(CONFIG.format(ratios=json.dumps(args.ratios), widths=json.dumps(args.widths),
                               paths=args.paths,
                               sde_share='share = ["ratio", "width"]' if args.share else "",
                               finite_share='share = ["ratio"]' if args.share else ""))
    n_cells = len(args.ratios) * len(args.widths)
    print(f"grid: {len(args.ratios)} ratios x {len(args.widths)} widths = {n_cells} cells, "
          f"{args.paths} SDE + {args.paths} finite paths per cell; cores: {os.cpu_count()}; "
          + ("one SDE sample for the grid, one finite sample per width (--share)" if args.share
             else "one SDE and one finite sample per cell"))
    print(f"load before: {load()}", flush=True)
    store = os.path.join(tmp, "store")
    rows = []
    if not args.skip_sweep:
        t_sweep, c_sweep = timed([sys.executable, "-m", "compare.cli", "sweep", cfg, "--out",
                                  store, "--workers", str(args.workers), "--no-progress"])
        print(f"sweep --workers {args.workers}: {t_sweep:.1f} s wall, {c_sweep:.1f} CPU s; "
              f"load: {load()}", flush=True)
        rows.append((f"covsde sweep --workers {args.workers}", t_sweep, c_sweep))
    if not args.skip_loop:
        res = os.path.join(tmp, "loop.json")
        t_loop, c_loop = timed([sys.executable, "-c", LOOP, cfg, res])
        print(f"single-process loop: {t_loop:.1f} s wall, {c_loop:.1f} CPU s; load: {load()}",
              flush=True)
        rows.append(("single-process loop (numba threads = cores)", t_loop, c_loop))
        if not args.skip_sweep:
            from compare.sweep import open_sweep
            from compare.sweep.config import cells, load_config

            ds = open_sweep(store)
            loop = json.load(open(res))
            for spec in cells(load_config(cfg), validate=False):
                got = ds["ks"].sel(**spec["axes"]).values.tolist()
                assert got == loop[spec["id"]], (spec["id"], got, loop[spec["id"]])
            print("loop and sweep distances identical (same seeds)")
    print()
    print(f"| run | wall time (s) | CPU time (s) | CPU / {os.cpu_count()} cores (s) |")
    print("|---|---|---|---|")
    for name, t, c in rows:
        print(f"| {name} | {t:.1f} | {c:.1f} | {c / os.cpu_count():.1f} |")
    for name, t, _ in rows:
        print(f"# {name}: goal wall time <= {GOAL_S:.0f} s {'met' if t <= GOAL_S else 'MISSED'} "
              f"({t:.0f} s)")
    print(f"\nstore left in {store}")


if __name__ == "__main__":
    main()
