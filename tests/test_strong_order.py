"""Euler–Maruyama strong order 1/2 (docs/theory.md §6.5), through ``sde._kernels.integrate_supplied``.

arch = mlp (shaped ReLU, c₊ = 0, c₋ = −1: linear-growth drift, no blow-up), m = 3,
V0 equicorrelated with ρ0 = 0.3, T = 1. A fine path at dt = 1/2048 and coarse paths at
dt ∈ {1/32, 1/64, 1/128, 1/256} are driven by the same Brownian increments (the coarse ones
are sums of the fine ones). Strong error ``e(dt) = E‖V_dt(T) − V_fine(T)‖_F`` over the paths
alive at every resolution (EM leaves the PD cone on ~4 % of paths at dt = 1/32; those paths
are excluded and counted). The fitted log-log slope must lie in 0.5 ± 0.15.

Sizing (measured, 12 independent seeds of 400 paths): slope 0.551 ± 0.026 (sd), so the
band [0.35, 0.65] is ≥ 3.8 sd from the mean on both sides (this seed: 0.592, errors
0.77, 0.52, 0.33, 0.23; 18 of 400 paths excluded); the slope is slightly above 1/2
because the reference is itself at a finite dt. Negative control: coarse increments *not*
summed from the fine ones (independent Brownian paths) give a slope ≈ 0, far outside.
"""
import numpy as np
import pytest

from sde import ShapedAttention, ShapedMLP, equicorrelated
from sde._kernels import integrate_supplied

M = 3
T_END = 1.0
N_FINE = 2048
COARSE = (32, 64, 128, 256)
MODEL = ShapedMLP(0.0, -1.0)
BOUND = 1e4
SLOPE_BAND = (0.35, 0.65)


def _end_states(V0, dW, dt, model=MODEL):
    P, n = dW.shape[:2]
    out_V = np.full((P, n + 1, M, M), np.nan)
    status = np.zeros(P, dtype=np.int8)
    death = np.full(P, np.inf)
    integrate_supplied(V0, model.limit(), dt, dW, BOUND, out_V, status, death)
    return out_V[:, -1], status


def coupled_end_states(n_paths, seed, n_fine=N_FINE, coarse=COARSE, chunk=100,
                       independent_coarse=False, model=MODEL):
    """End states {n_steps: (paths, m, m)} and statuses at every resolution."""
    V0 = equicorrelated(M, 0.3)
    rng = np.random.default_rng(seed)
    res = (*coarse, n_fine)
    ends = {n: [] for n in res}
    stats = {n: [] for n in res}
    for _ in range(0, n_paths, chunk):
        dWf = np.sqrt(T_END / n_fine) * rng.standard_normal((chunk, n_fine, 2, M, M))
        for n in res:
            if independent_coarse and n != n_fine:
                dW = np.sqrt(T_END / n) * rng.standard_normal((chunk, n, 2, M, M))
            else:
                dW = dWf.reshape(chunk, n, n_fine // n, 2, M, M).sum(axis=2)
            V, st = _end_states(V0, dW, T_END / n, model)
            ends[n].append(V)
            stats[n].append(st)
    ends = {n: np.concatenate(v) for n, v in ends.items()}
    stats = {n: np.concatenate(v) for n, v in stats.items()}
    alive = np.all([stats[n] == 0 for n in res], axis=0)
    return ends, stats, alive


def strong_slope(ends, alive, n_fine, coarse):
    errs = np.array([np.linalg.norm((ends[n] - ends[n_fine])[alive], axis=(1, 2)).mean()
                     for n in coarse])
    dts = T_END / np.array(coarse)
    return np.polyfit(np.log(dts), np.log(errs), 1)[0], errs


def _rho01(V):
    return V[:, 0, 1] / np.sqrt(V[:, 0, 0] * V[:, 1, 1])


@pytest.fixture(scope="module")
def coupled():
    return coupled_end_states(400, seed=11)


def test_em_strong_order_half(coupled):
    ends, stats, alive = coupled
    dead = {n: int(np.sum(stats[n] != 0)) for n in stats}
    # the excluded paths are few (PD-cone exits of EM at the coarsest step), and counted
    assert alive.sum() >= 0.9 * alive.size, dead
    slope, errs = strong_slope(ends, alive, N_FINE, COARSE)
    assert np.all(np.diff(errs) < 0), errs
    assert SLOPE_BAND[0] < slope < SLOPE_BAND[1], f"strong slope {slope:.3f}, errors {errs}"


def test_weak_error_sanity(coupled):
    """Weak error of the bounded ρ_01(T): |E ρ_dt − E ρ_fine| ≤ 4.4 SE + 0.02 at every dt.

    Measured with 4000 coupled paths: the weak error is ≤ 0.004 at dt = 1/32, below the
    resolution of this sample (SE ≈ 0.011 at 400 paths), so this only bounds it (a weak error
    above ~0.07 at dt = 1/32 would fail); the weak order itself is not measurable cheaply.
    """
    ends, _, alive = coupled
    ref = _rho01(ends[N_FINE][alive])
    for n in COARSE:
        d = _rho01(ends[n][alive]) - ref
        se = d.std(ddof=1) / np.sqrt(d.size)
        assert abs(d.mean()) < 4.4 * se + 0.02, (n, d.mean(), se)


def test_negative_control_uncoupled_increments():
    """Independent coarse increments: the error does not shrink, the slope is far below 0.35."""
    ends, _, alive = coupled_end_states(200, seed=12, independent_coarse=True)
    slope, errs = strong_slope(ends, alive, N_FINE, COARSE)
    assert not (SLOPE_BAND[0] < slope < SLOPE_BAND[1]), f"slope {slope:.3f}"
    assert abs(slope) < 0.15


@pytest.mark.slow
def test_em_strong_order_half_long():
    """2000 paths, five resolutions dt = 1/32 … 1/512 against dt = 1/4096."""
    coarse = (32, 64, 128, 256, 512)
    ends, _, alive = coupled_end_states(2000, seed=13, n_fine=4096, coarse=coarse)
    assert alive.sum() >= 0.9 * alive.size
    slope, errs = strong_slope(ends, alive, 4096, coarse)
    assert SLOPE_BAND[0] < slope < SLOPE_BAND[1], f"strong slope {slope:.3f}, errors {errs}"


@pytest.mark.slow
def test_em_strong_order_half_attention_long():
    """Shaped attention (γ = 0.5, τ0 = 1, m = 3, ρ0 = 0.3, T = 1), 2000 coupled paths.

    Paths that die (PD-cone exit or blow-up, ~0.5 % here) at any resolution are excluded.
    Measured with 5 seeds of 400 paths: slope 0.56 ± 0.07 (sd); at 2000 paths sd ≈ 0.03.
    """
    model = ShapedAttention(0.5, 1.0)
    ends, stats, alive = coupled_end_states(2000, seed=14, model=model)
    assert alive.sum() >= 0.97 * alive.size, {n: int(np.sum(stats[n] != 0)) for n in stats}
    slope, errs = strong_slope(ends, alive, N_FINE, COARSE)
    assert SLOPE_BAND[0] < slope < SLOPE_BAND[1], f"strong slope {slope:.3f}, errors {errs}"
