"""Weak order of the SPD scheme (docs/theory.md §4.7), measured: ``python benchmarks/spd_weak_order.py``.

Shaped attention (γ = 0.5, τ0 = 1, m = 3, ρ0 = 0.2, T = 1). Bounded functionals of the
stopped state at T (a dead path contributes 0):

    f1 = E[ρ01(T) 1{alive}],   f2 = E[exp(−V00(T)) 1{alive}],   f3 = P(alive at T)

at dt = 0.1, 0.05, 0.025, 0.0125 against the same scheme at dt = 0.003125 (fresh seeds,
``--paths`` each). The weak error e(dt) = f(dt) − f(ref) is fitted as C dt^p on the
coarsest three or four steps (those whose error is more than 2 standard errors); p is the
measured weak order. Standard errors from the sample variance.
"""
import argparse
import math
import sys

import numpy as np

import sde

DTS = (0.1, 0.05, 0.025, 0.0125)
REF_DT = 0.003125


def functionals(method, dt, n, seed, model, V0):
    ds = sde.simulate(model, V0, t_end=1.0, dt=dt, n_paths=n, seed=seed, method=method,
                      save_every=10 ** 9, progress=False)
    V = ds.V.values[:, -1]
    alive = ds.status.values == 0
    rho = np.where(alive, V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1]), 0.0)
    e = np.where(alive, np.exp(-np.where(alive, V[:, 0, 0], 0.0)), 0.0)
    a = alive.astype(float)
    vals = np.array([rho.mean(), e.mean(), a.mean()])
    ses = np.array([rho.std(), e.std(), a.std()]) / math.sqrt(n)
    return vals, ses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paths", type=int, default=400_000)
    p.add_argument("--method", default="spd")
    args = p.parse_args(argv)
    model = sde.ShapedAttention(gamma=0.5, tau0=1.0)
    V0 = sde.equicorrelated(3, 0.2)
    ref, ref_se = functionals(args.method, REF_DT, args.paths, 1000, model, V0)
    print(f"{args.method}: reference dt = {REF_DT}: f = {np.round(ref, 5)} ± {np.round(ref_se, 5)}")
    errs, ses = [], []
    for k, dt in enumerate(DTS):
        v, se = functionals(args.method, dt, args.paths, 1001 + k, model, V0)
        errs.append(v - ref)
        ses.append(np.hypot(se, ref_se))
        print(f"dt = {dt:<7g} e = {np.round(v - ref, 5)}  (SE {np.round(ses[-1], 5)})",
              flush=True)
    errs, ses = np.array(errs), np.array(ses)
    names = ("E[rho01 1{alive}]", "E[exp(-V00) 1{alive}]", "P(alive)")
    for j, name in enumerate(names):
        use = np.abs(errs[:, j]) > 2 * ses[:, j]
        if use.sum() < 2:
            print(f"{name}: errors within noise at every dt (no order measurable)")
            continue
        x = np.log(np.array(DTS)[use])
        y = np.log(np.abs(errs[use, j]))
        slope = np.polyfit(x, y, 1)[0]
        print(f"{name}: fitted weak order p = {slope:.2f} over dt = "
              f"{', '.join(f'{d:g}' for d in np.array(DTS)[use])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
