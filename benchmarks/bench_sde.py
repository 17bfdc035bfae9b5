"""Benchmark of the SDE integrators (not a test): ``python benchmarks/bench_sde.py``.

One run, one SDE — shaped attention (docs/theory.md §3.1), γ = 0.5, τ0 = 1, H = 1, V0
equicorrelated with ρ0 = 0.2, T = 1, dt = 0.01 (100 Euler–Maruyama steps) — for
m ∈ {3, 8, 16}, in path-steps per second (paths × steps / wall time; dead paths are
counted as if they had run to T, they are 1–6 % of the paths):

* **kernel** — :func:`sde.simulate` (numba Euler lane kernel: 8 RNG blocks as lanes, compiled
  per m, lane groups on ``numba.get_num_threads()`` threads; per-path kernel for m > 16),
  warm (compiled before timing), numba threads = 2, only the first and last steps saved;
* **per-path** — the same with the per-path loop ``simulate_blocks_per_path`` (the lanes'
  test oracle and the kernel above m = 16; bit-identical results);
* **spd** — :func:`sde.simulate` with ``method="spd"`` (docs/theory.md §4.7), lane kernel;
* **numpy** — batched Euler–Maruyama in one process: the same drift and O(m³) noise as
  the kernel (docs/theory.md §4), vectorised over paths, batched Cholesky with per-path failure
  handling (a batch that fails is bisected until the failing paths are found);
* **RNG floor** — a numba ``prange`` kernel that draws the same normals per path-step
  (m(m+1)/2 for Z plus m² for G') from the same per-block Generators and only sums them
  (the floor of draws through the Generator);
* **inline floor** — the same draws with the inlined PCG64 + ziggurat the lane kernels use
  (:mod:`sde.pcg64`: the same stream, state in registers for a path-step's draws): the
  floor of the kernels as they are now. The lane kernels draw faster than the Generator
  floor, so "kernel/RNG" mixes two gains: less arithmetic, cheaper draws;
  "kernel/inline" is the arithmetic alone;
* **sdeint** — ``sdeint.itoEuler`` on the flattened m²-state, one path per call, with
  ``G(y, t) = model.noise_matrix(V)`` (vectorised numpy, ``np.kron``), a few paths.

Ratios: kernel/RNG floor, kernel/inline floor (the fraction of the kernel's time spent on
normals), per-path/RNG floor, spd/RNG floor, kernel/per-path, kernel/numpy. Results:
docs/benchmarks.md. (The floor loops sum their draws, a dependency chain: a slight
overestimate of the true cost of the normals.)
"""
import argparse
import importlib
import math
import os
import platform
import sys
import time

# BLAS at one thread (numpy is one process). Not OMP_NUM_THREADS: numba's OpenMP threading
# layer obeys it, and the kernel would silently run on one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

import sde  # noqa: E402
from sde import pcg64  # noqa: E402

SIM = importlib.import_module("sde.simulate")  # the module (sde.simulate is the function)

GAMMA, TAU0, RHO0, T_END, DT = 0.5, 1.0, 0.2, 1.0, 0.01
BOUND = SIM.DEFAULT_BOUND


# ------------------------------------------------------------------------------ kernel


def kernel_runner(model, V0, n_paths, seed, method="euler", per_path=False):
    """A callable timing one :func:`sde.simulate` run (``method``): () -> (wall s, CPU s,
    dead paths). ``per_path``: Euler with the per-path kernel ``simulate_blocks_per_path``
    (the kernel before the lanes; same results) swapped in. Compiled (or loaded) here."""
    kw = dict(t_end=T_END, dt=DT, n_paths=n_paths, seed=seed, save_every=10 ** 9,
              progress=False, method=method)
    K = importlib.import_module("sde._kernels")
    lanes = K.simulate_blocks

    def once(n=n_paths):
        if per_path:
            K.simulate_blocks = K.simulate_blocks_per_path
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            ds = sde.simulate(model, V0, **{**kw, "n_paths": n})
            return time.perf_counter() - t0, time.process_time() - c0, ds.attrs["n_dead"]
        finally:
            K.simulate_blocks = lanes

    once(8)  # compile / load from cache
    return once


# ------------------------------------------------------------------------------ numpy


def batched_cholesky(V):
    """(L, ok): lower factors of a batch (k, m, m), ``ok[i]`` False where V[i] is not PD.

    ``np.linalg.cholesky`` raises for the whole batch if one matrix fails: bisect the
    batch until the failing matrices are isolated (O(failures · log k) extra calls).
    """
    L = np.zeros_like(V)
    ok = np.ones(V.shape[0], dtype=bool)

    def go(lo, hi):
        try:
            L[lo:hi] = np.linalg.cholesky(V[lo:hi])
        except np.linalg.LinAlgError:
            if hi - lo == 1:
                ok[lo] = False
                return
            mid = (lo + hi) // 2
            go(lo, mid)
            go(mid, hi)

    if V.shape[0]:
        go(0, V.shape[0])
    return L, ok


def numpy_drift(V, coef):
    """b(V) for a batch (k, m, m): the formulas of coefficients.drift_into, vectorised."""
    m = V.shape[-1]
    r = V.mean(axis=2)                                        # row means
    mu = r.mean(axis=1)
    S = V - r[:, :, None] - r[:, None, :] + mu[:, None, None]  # P V P
    sv = np.einsum("kab,kab->k", S, V)                        # <S, V>_F
    dS = np.einsum("kaa->ka", S)
    st = dS - dS.mean(axis=1, keepdims=True)                  # s̃
    vs = np.einsum("kab,kb->ka", V, st)                       # V s̃
    v = np.einsum("kaa->ka", V)
    return coef.att_drift * (sv[:, None, None] * V / (m * m)
                          + (v[:, :, None] * vs[:, None, :] + vs[:, :, None] * v[:, None, :])
                          / (2.0 * m))


def numpy_em(model, V0, n_paths, seed):
    """Batched Euler–Maruyama (attention), same step as the kernel; returns (V_T, status)."""
    coef = model.limit()
    m = V0.shape[0]
    n_steps = int(round(T_END / DT))
    rng = np.random.default_rng(seed)
    sq = math.sqrt(DT)
    sa = math.sqrt(coef.a_lin)
    c = coef.att_noise / m
    P = np.eye(m) - 1.0 / m
    iu, ju = np.triu_indices(m)
    diag_scale = np.where(iu == ju, math.sqrt(2.0), 1.0)
    status = np.zeros(n_paths, dtype=np.int8)
    idx = np.arange(n_paths)                                  # alive paths
    V = np.broadcast_to(V0, (n_paths, m, m)).copy()
    L = np.broadcast_to(np.linalg.cholesky(V0), (n_paths, m, m)).copy()
    for _ in range(n_steps):
        k = idx.size
        z = rng.standard_normal((k, iu.size)) * (sq * diag_scale)
        Z = np.empty((k, m, m))
        Z[:, iu, ju] = z
        Z[:, ju, iu] = z
        Gp = rng.standard_normal((k, m, m)) * sq
        K = np.swapaxes(L, 1, 2) @ P @ L                      # Lᵀ P L
        T = Gp @ K
        N = sa * Z + c * (T + np.swapaxes(T, 1, 2))
        noise = L @ N @ np.swapaxes(L, 1, 2)
        Vn = V + numpy_drift(V, coef) * DT + noise
        Vn = 0.5 * (Vn + np.swapaxes(Vn, 1, 2))
        blew = ~(np.abs(Vn) <= BOUND).all(axis=(1, 2))
        Ln, ok = batched_cholesky(np.where(blew[:, None, None], np.eye(m), Vn))
        dead = blew | ~ok
        if dead.any():
            status[idx[blew]] = 2
            status[idx[~blew & ~ok]] = 1
            keep = ~dead
            idx, Vn, Ln = idx[keep], Vn[keep], Ln[keep]
        V, L = Vn, Ln
    return V, status


def numpy_runner(model, V0, n_paths, seed):
    """A callable timing one :func:`numpy_em` run: () -> (wall s, CPU s, dead paths)."""
    def once():
        t0, c0 = time.perf_counter(), time.process_time()
        _, status = numpy_em(model, V0, n_paths, seed)
        return time.perf_counter() - t0, time.process_time() - c0, int(np.count_nonzero(status))

    numpy_em(model, V0, 16, seed)  # warm caches
    return once


# ------------------------------------------------------------------------------ RNG floor


@njit(parallel=True, cache=True)
def _rng_floor(gens, block_len, n_steps, n_normals, out):
    for k in prange(len(gens)):
        gen = gens[k]
        acc = 0.0
        for _p in range(block_len[k]):
            for _s in range(n_steps):
                for _i in range(n_normals):
                    acc += gen.standard_normal()
        out[k] = acc


@njit(parallel=True, cache=True)
def _inline_floor(rows, block_len, n_steps, n_normals, out):
    for k in prange(rows.shape[0]):
        acc = 0.0
        for _p in range(block_len[k]):
            for _s in range(n_steps):
                hi, lo, inc_hi, inc_lo = rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3]
                for _i in range(n_normals):
                    x, hi, lo = pcg64.standard_normal(hi, lo, inc_hi, inc_lo)
                    acc += x
                rows[k, 0] = hi
                rows[k, 1] = lo
        out[k] = acc


def floor_runner(m, n_paths, seed, inline=False):
    """A callable timing the RNG floor (``inline``: the inline floor) for the kernel's draws
    at token count m: () -> (wall s, CPU s, None)."""
    n_steps = int(round(T_END / DT))
    n_normals = m * (m + 1) // 2 + m * m  # Z's upper triangle and G', as in the kernel

    def once():
        gens = tuple(SIM.block_generators(seed, n_paths))
        lens = np.array([min(SIM.RNG_BLOCK, n_paths - k * SIM.RNG_BLOCK)
                         for k in range(len(gens))], dtype=np.int64)
        out = np.zeros(len(gens))
        rows = pcg64.states(gens)
        t0, c0 = time.perf_counter(), time.process_time()
        if inline:
            _inline_floor(rows, lens, n_steps, n_normals, out)
        else:
            _rng_floor(gens, lens, n_steps, n_normals, out)
        return time.perf_counter() - t0, time.process_time() - c0, None

    once()  # compile for this tuple length
    return once


# ------------------------------------------------------------------------------ sdeint


def bench_sdeint(model, V0, seed, budget_s=1.5, max_paths=20):
    import sdeint

    m = V0.shape[0]
    tspan = np.linspace(0.0, T_END, int(round(T_END / DT)) + 1)

    def f(y, t):
        return model.drift(y.reshape(m, m)).ravel()

    def G(y, t):
        return model.noise_matrix(y.reshape(m, m))

    rng = np.random.default_rng(seed)
    sdeint.itoEuler(f, G, V0.ravel(), tspan[:3], generator=rng)  # warm
    n, failed = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    while n < 2 or (time.perf_counter() - t0 < budget_s and n < max_paths):
        try:
            sdeint.itoEuler(f, G, V0.ravel(), tspan, generator=rng)
        except np.linalg.LinAlgError:  # left the PD cone: counted, as for the others
            failed += 1
        n += 1
    return time.perf_counter() - t0, time.process_time() - c0, n, failed


# ------------------------------------------------------------------------------ main


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}); numba {numba.__version__}, numpy {np.__version__}, "
            f"python {platform.python_version()}; numba threads {numba.get_num_threads()}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--paths", type=int, default=4096, help="paths for kernel, numpy, RNG floor")
    p.add_argument("--ms", type=int, nargs="+", default=[3, 8, 16], help="token counts m")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed rounds; each round times every column once, in turn (best is kept)")
    p.add_argument("--threads", type=int, default=2, help="numba threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true", help="skip numpy and sdeint")
    args = p.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    model = sde.ShapedAttention(gamma=GAMMA, tau0=TAU0)
    n_steps = int(round(T_END / DT))
    print(f"shaped attention, gamma={GAMMA}, tau0={TAU0}, rho0={RHO0}, T={T_END}, dt={DT} "
          f"({n_steps} steps), {args.paths} paths (sdeint: a few), best of {args.repeats}")
    print(machine())
    threads = numba.get_num_threads()
    cols = ["kernel", "per-path", "spd", "RNG floor", "inline"]
    if not args.no_baselines:
        cols += ["numpy", "sdeint"]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for m in args.ms:
        V0 = sde.equicorrelated(m, RHO0)
        work = args.paths * n_steps
        runners = {
            "kernel": kernel_runner(model, V0, args.paths, args.seed),
            "per-path": kernel_runner(model, V0, args.paths, args.seed, per_path=True),
            "spd": kernel_runner(model, V0, args.paths, args.seed, method="spd"),
            "RNG floor": floor_runner(m, args.paths, args.seed),
            "inline": floor_runner(m, args.paths, args.seed, inline=True),
        }
        if not args.no_baselines:
            runners["numpy"] = numpy_runner(model, V0, args.paths, args.seed)
        # round robin: a slow spell of the machine (other tenants, clock) hits every column
        # alike instead of one of them; the best of the repeats is kept
        best, dead = {}, {}
        for _ in range(args.repeats):
            for name, once in runners.items():
                t, c, d = once()
                bt, bc = best.get(name, (math.inf, math.inf))
                best[name] = (min(bt, t), min(bc, c))
                if d is not None:
                    dead[name] = d
        res = {name: (work / t, work / c) for name, (t, c) in best.items()}
        if not args.no_baselines:
            ts, cs, n_s, dead_s = bench_sdeint(model, V0, args.seed)
            res["sdeint"] = (n_s * n_steps / ts, n_s * n_steps / cs)
            dead["sdeint"] = f"{dead_s}/{n_s}"
        rows.append((m, res, dead))
        print(f"  m = {m} done", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def table(title, idx):
        print(title)
        head = (f"{'m':>3} | " + " | ".join(f"{c:>9}" for c in cols)
                + f" | {'kern/RNG':>8} | {'kern/inline':>11} | {'perpath/RNG':>11} | {'spd/RNG':>7}"
                + f" | {'kern/perpath':>12}"
                + ("" if args.no_baselines else f" | {'kern/numpy':>10}"))
        print(head)
        print("-" * len(head))
        for m, res, _ in rows:
            v = {c: res[c][idx] for c in cols}
            line = (f"{m:>3} | " + " | ".join(f"{v[c]:9.3g}" for c in cols)
                    + f" | {v['kernel'] / v['RNG floor']:8.2f} | {v['kernel'] / v['inline']:11.2f} | "
                    f"{v['per-path'] / v['RNG floor']:11.2f} | {v['spd'] / v['RNG floor']:7.2f} | "
                    f"{v['kernel'] / v['per-path']:12.2f}")
            if not args.no_baselines:
                line += f" | {v['kernel'] / v['numpy']:10.2f}"
            print(line)

    table(f"path-steps per second of wall time (numba kernels on {threads} threads; numpy "
          f"and sdeint one process, BLAS one thread)", 0)
    table("path-steps per CPU-second (all threads summed: per-core throughput, less "
          "sensitive to other load on the machine)", 1)
    print("dead paths: " + "; ".join(f"m = {m}: {d}" for m, _, d in rows))
    goals = {3: 0.75, 8: 0.7, 16: 0.55}
    for m, res, _ in rows:
        if m in goals:
            f = res["kernel"][1] / res["RNG floor"][1]
            print(f"goal at m = {m}: kernel >= {goals[m]} of the RNG floor (per CPU-second): "
                  f"{'met' if f >= goals[m] else 'MISSED'} ({f:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
