"""Time to accuracy, Euler–Maruyama vs the SPD scheme: ``python benchmarks/bench_time_to_accuracy.py``.

For shaped attention (γ = 0.5, τ0 = 1) and the demo block (γ = 1/sqrt 8, τ0 = 1), m = 3,
ρ0 = 0.2, T = 1: a fine reference (Euler at dt = ``--ref-dt``, default 5e-4, ``--ref-paths``
paths), then each scheme at dt ∈ {0.1, 0.05, 0.02, 0.01, 0.005, 0.0025} with ``--paths`` paths. For
each run: the two-sample KS distance of ρ01(T) and of V00(T) from the reference (a dead path
counted as +∞, so the dead fraction is part of the law), the noise floor (the mean KS
distance of two samples of these sizes from one law, ``kstwobign.mean() · sqrt(1/n + 1/n_ref)``)
and the wall time. A scheme has *reached the floor* at the coarsest dt whose larger KS is
≤ 1.5 × floor; its time to accuracy is that run's wall time. Same process, same threads, so
the EM/SPD ratio is meaningful even on a loaded machine (the load average is printed).
"""
import argparse
import math
import os
import sys
import time

import numba
import numpy as np
import scipy.stats

import sde

DTS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.0025)
MODELS = {
    "attention": sde.ShapedAttention(gamma=0.5, tau0=1.0),
    "block": sde.ShapedBlock(gamma=1 / math.sqrt(8), tau0=1.0),
}


def stopped(model, V0, method, dt, n, seed):
    t0 = time.perf_counter()
    ds = sde.simulate(model, V0, t_end=1.0, dt=dt, n_paths=n, seed=seed, method=method,
                      save_every=10 ** 9, progress=False)
    wall = time.perf_counter() - t0
    V = ds.V.values[:, -1]
    dead = ds.status.values != 0
    rho = V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])
    v00 = V[:, 0, 0].copy()
    rho[dead] = np.inf
    v00[dead] = np.inf
    return (rho, v00), wall, dead.mean()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paths", type=int, default=200_000)
    p.add_argument("--ref-paths", type=int, default=200_000)
    p.add_argument("--ref-dt", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    args = p.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    V0 = sde.equicorrelated(3, 0.2)
    print(f"paths {args.paths}, reference: euler dt = {args.ref_dt}, {args.ref_paths} paths; "
          f"numba threads {numba.get_num_threads()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name in args.models:
        model = MODELS[name]
        for method in ("euler", "spd"):  # compile outside the timings
            stopped(model, V0, method, 0.5, 16, 0)
        ref, wref, dref = stopped(model, V0, "euler", args.ref_dt, args.ref_paths, 1)
        floor = scipy.stats.kstwobign.mean() * math.sqrt(1 / args.paths + 1 / args.ref_paths)
        print(f"\n{name}: reference {wref:.1f} s, dead {100 * dref:.2f} %; "
              f"noise floor {floor:.4f}")
        print(f"{'method':>6} {'dt':>6} {'KS rho01':>9} {'KS V00':>8} {'dead %':>7} "
              f"{'wall s':>7}")
        reached = {}
        for method in ("euler", "spd"):
            for k, dt in enumerate(DTS):
                x, wall, dead = stopped(model, V0, method, dt, args.paths, 10 + k)
                ks = [scipy.stats.ks_2samp(a, b).statistic for a, b in zip(x, ref)]
                mark = ""
                if max(ks) <= 1.5 * floor and method not in reached:
                    reached[method] = (dt, wall)
                    mark = "  <- at the floor"
                print(f"{method:>6} {dt:>6g} {ks[0]:>9.4f} {ks[1]:>8.4f} {100 * dead:>7.2f} "
                      f"{wall:>7.2f}{mark}", flush=True)
        for method in ("euler", "spd"):
            if method in reached:
                print(f"  {method}: floor reached at dt = {reached[method][0]:g} in "
                      f"{reached[method][1]:.2f} s")
            else:
                print(f"  {method}: floor not reached at dt >= {DTS[-1]}")
        if len(reached) == 2:
            print(f"  time to accuracy, spd / euler = "
                  f"{reached['spd'][1] / reached['euler'][1]:.2f}")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
