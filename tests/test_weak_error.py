"""Weak errors E f(A) − E f(B) with intervals (compare.weak_error), and tail probabilities.

Statistical checks, sized from the sample sizes:

- a perturbed model against the original (Li–Nica–Roy MLP, c₋ = −1 vs −1.15: the MLP drift
  ν grows by 32 %): the interval of e for ρ_01 at t = 1 excludes 0 (measured z ≈ 5 with
  8000 paths per side);
- identical laws: over 200 independent pairs the 95 % interval covers 0 at the nominal rate
  (binomial 99 % acceptance band [182, 198] of 200), for a continuous functional (Welch) and
  an indicator (Newcombe); the same count under the perturbation (negative control) falls
  outside the band (expected coverage ≈ 78 % with 500 paths per side: z ≈ 1.2).
"""
import json
import math

import numpy as np
import pytest
import scipy.stats

import sde
from compare.cli import main
from compare.tails import tail_probabilities
from compare.weak_error import (difference_ci, exceedance, functional_values, mean_ci,
                                parse_functional, wilson)
from sde.errors import CovsdeInputError
from sde.io import write_dataset

V0 = sde.equicorrelated(2, -0.5)
RIGHT = sde.ShapedMLP(c_plus=0.0, c_minus=-1.0)
WRONG = sde.ShapedMLP(c_plus=0.0, c_minus=-1.15)
N_REP = 200


def _band(n_rep, level=0.95, conf=0.99):
    """Acceptance band of the number of covering intervals among n_rep at coverage level."""
    lo = scipy.stats.binom.ppf((1 - conf) / 2, n_rep, level)
    hi = scipy.stats.binom.ppf(1 - (1 - conf) / 2, n_rep, level)
    return int(lo), int(hi)


def _split(ds, f, k):
    x = functional_values(ds, f, [ds.sizes["time"] - 1], 1e4)[:, 0]
    return x.reshape(k, -1)


def test_perturbed_model_against_itself_excludes_zero():
    a = sde.simulate(RIGHT, V0, t_end=1.0, dt=1 / 32, n_paths=8000, seed=11, method="spd")
    b = sde.simulate(WRONG, V0, t_end=1.0, dt=1 / 32, n_paths=8000, seed=12, method="spd")
    c = sde.simulate(RIGHT, V0, t_end=1.0, dt=1 / 32, n_paths=8000, seed=13, method="spd")
    f = "corr:0,1"
    xa, xb, xc = (functional_values(d, f, [-1], 1e4)[:, 0] for d in (a, b, c))
    d, lo, hi = difference_ci(xa, xb, False)
    assert lo > 0 or hi < 0, (d, lo, hi)          # the perturbation is resolved
    d0, lo0, hi0 = difference_ci(xa, xc, False)
    assert lo0 <= 0 <= hi0, (d0, lo0, hi0)        # the same law is not


@pytest.mark.parametrize("f, indicator", [("corr:0,1", False), ("below:corr:0,1:-0.2", True)])
def test_identical_laws_covered_at_nominal_rate_and_perturbation_not(f, indicator):
    per = 500
    same = sde.simulate(RIGHT, V0, t_end=1.0, dt=1 / 16, n_paths=2 * N_REP * per, seed=21,
                        method="spd")
    wrong = sde.simulate(WRONG, V0, t_end=1.0, dt=1 / 16, n_paths=N_REP * per, seed=22,
                         method="spd")
    xs = _split(same, f, 2 * N_REP)
    xw = _split(wrong, f, N_REP)
    covered = sum(lo <= 0 <= hi for _, lo, hi in
                  (difference_ci(xs[2 * i], xs[2 * i + 1], indicator) for i in range(N_REP)))
    control = sum(lo <= 0 <= hi for _, lo, hi in
                  (difference_ci(xs[2 * i], xw[i], indicator) for i in range(N_REP)))
    lo_band, hi_band = _band(N_REP)
    assert lo_band <= covered <= hi_band, covered
    assert control < lo_band, control             # negative control: coverage of 0 collapses


def test_wilson_and_mean_ci_known_values():
    p, lo, hi = wilson(0, 100)
    assert p == 0 and abs(lo) < 1e-15 and 0.03 < hi < 0.04   # 3.7 % (Wilson, z = 1.96)
    p, lo, hi = wilson(50, 100)
    assert math.isclose(lo, 0.4038, abs_tol=1e-3) and math.isclose(hi, 0.5962, abs_tol=1e-3)
    m, lo, hi, n = mean_ci(np.array([1.0, 2.0, 3.0, np.nan]), False)
    assert n == 3 and m == 2.0 and math.isclose(hi - m, 1.96 * 1 / math.sqrt(3), rel_tol=1e-3)


def _dataset(diag_paths, status, death, dt=0.25):
    """A hand-made m = 2 dataset: V = diag(x, 1) along each path's values."""
    diag = np.asarray(diag_paths, dtype=float)
    P, T = diag.shape
    V = np.zeros((P, T, 2, 2))
    V[..., 0, 0] = diag
    V[..., 1, 1] = 1.0
    V[~np.isfinite(diag)] = np.nan
    from sde.schema import make_dataset

    return make_dataset(V, np.asarray(status), np.asarray(death, dtype=float),
                        np.arange(T), dt, {"source": "sde-euler", "bound": 1e4})


def test_exceedance_known_answers():
    nan = np.nan
    ds = _dataset([[1, 5, 20, 3],        # exceeds 10 at t = 0.5, stays exceeded after
                   [1, 2, 3, 4],         # never
                   [1, 8, nan, nan],     # blew up at 0.5 (status 2): exceeded from 0.5
                   [1, 2, nan, nan]],    # left the cone at 0.5 without exceeding: undetermined
                  status=[0, 0, 2, 1], death=[nan, nan, 0.5, 0.5])
    x = exceedance(ds, 10.0, np.arange(4))
    np.testing.assert_array_equal(x[0], [0, 0, 1, 1])
    np.testing.assert_array_equal(x[1], [0, 0, 0, 0])
    np.testing.assert_array_equal(x[2], [0, 0, 1, 1])
    np.testing.assert_array_equal(x[3][:2], [0, 0])
    assert np.isnan(x[3][2:]).all()


def test_parse_functional_errors():
    for bad in ("exceed:0", "exceed:1e5", "exp:5", "below:mineig", "nope", "alive:1",
                "below:foo:1"):
        with pytest.raises(CovsdeInputError):
            parse_functional(bad, 2, 1e4)
    assert parse_functional("below:mineig:0.05", 2, 1e4) == ("below", ("mineig", 0.05))


def test_tail_probabilities_and_cli(tmp_path, capsys):
    a = sde.simulate(sde.ShapedAttention(gamma=0.8, tau0=0.5), sde.equicorrelated(2, 0.2),
                     t_end=0.5, dt=1 / 64, n_paths=512, seed=3, method="spd", save_every=1)
    b = sde.simulate(sde.ShapedAttention(gamma=0.8, tau0=0.5), sde.equicorrelated(2, 0.2),
                     t_end=0.5, dt=1 / 64, n_paths=512, seed=4, method="spd", save_every=1)
    df = tail_probabilities(a, b, [2.0, 10.0], times=[0.25, 0.5])
    assert len(df) == 4 and (df["save_every_a"] == 1).all()
    r = df.iloc[-1]
    assert r["p_a_low"] <= r["p_a"] <= r["p_a_high"]
    assert r["p_a_minus_b_low"] <= r["p_a_minus_b"] <= r["p_a_minus_b_high"]
    # monotone in K and t (an event of the supremum so far)
    assert df.set_index(["level", "time"])["p_a"].loc[(2.0, 0.5)] >= df.set_index(
        ["level", "time"])["p_a"].loc[(10.0, 0.5)]
    pa, pb = str(tmp_path / "a.nc"), str(tmp_path / "b.nc")
    write_dataset(a, pa)
    write_dataset(b, pb)
    assert main(["compare", pa, pb, "--time", "0.5", "--tail", "2", "--boot", "40",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["tails"]) == 1 and doc["tails"][0]["level"] == 2.0
    assert main(["compare", pa, pb, "--time", "0.5", "--tail", "2", "--boot", "40"]) == 0
    assert "tail probabilities" in capsys.readouterr().out
    assert main(["compare", pa, pb, "--tail", "1e5"]) == 2
    assert "below the censoring bound" in capsys.readouterr().err


def test_tail_note_for_coarse_save_grid():
    a = sde.simulate(sde.ShapedAttention(gamma=0.8, tau0=0.5), sde.equicorrelated(2, 0.2),
                     t_end=0.5, dt=1 / 64, n_paths=256, seed=3, method="spd", save_every=8)
    df = tail_probabilities(a, a, [10.0])
    assert (df["save_every_a"] == 8).all() and df.attrs["notes"]
