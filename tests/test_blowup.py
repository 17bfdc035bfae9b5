"""Blow-up probability converged in dt (:mod:`sde.blowup`, :mod:`sde.coupled`, ``covsde blowup``).

* Coupling: the refined increments sum exactly to the coarse ones and have the law of
  N(0, dt_k) entries; control: a bridge with the wrong spread fails the variance check.
* Paired interval (Newcombe's hybrid score): covers a known paired difference at ≥ the
  nominal rate; control: a value 3 standard errors off is covered far less often.
* The coupled difference has the mean of independent runs (many paths) and a much smaller
  variance; control: independent runs with γ × 1.15 on the fine side are rejected.
* The rule: converged only when the paired interval of P(2dt) − P(dt) lies inside the
  tolerance; "more paths needed" when the tolerance is below what the paths allow; "still
  moving with dt" when the change stays resolved. The 2 000-path attention case
  (γ = 0.5, τ0 = 1) does not claim convergence at a wrong value (reference ≈ 1.31 %).
* Known answer: the m = 2 Li–Nica–Roy shaped MLP never blows up (its ρ-diffusion stays in
  [−1, 1] and V00 is a geometric Brownian motion): P = 0 at every dt.
* Known answer with blow-up: the deterministic limit of the attention drift alone (a model
  with no noise). From an equicorrelated V0 (v0 = 1, ρ0) the state stays v·V0/v0 with
  v' = k α v³, α = (m − 1)(1 − ρ0)²/m², k = γ²/τ0², so it explodes at T* = 1/(2 k α v0²)
  (docs/theory.md §3.1 on equicorrelated states). Every scheme's death time converges to T*
  (RK4 within one step), and P(τ ≤ T) converges to 1 for T > T* and to 0 for T < T*;
  control: k off by 15 % moves T* across T and flips the answer.
* CLI: the human table, ``--json`` (rows with ``difference`` and ``difference_ci``), and
  one-line errors with exit 2.
"""
import dataclasses
import json

import numpy as np
import pytest

import sde
from compare.cli import main
from sde.blowup import (CONVERGED, MORE_PATHS, STILL_MOVING, UNCONFIRMED, blowup_probability,
                        criterion, resolution_floor, stability_grid, verdict)
from sde.coupled import (coupled_increments, paired_difference_ci, paired_difference_ci_counts,
                         refine_increments, run_level)
from sde.limits import LimitCoefficients
from sde.models import Model

ATT = sde.ShapedAttention(gamma=0.5, tau0=1.0)
ATT_STRONG = sde.ShapedAttention(gamma=0.6, tau0=0.5)
V3 = sde.equicorrelated(3, 0.2)


def test_coupled_increments_sum_and_law():
    """Level k's step pairs sum to level k − 1's steps (to round-off), and every level's
    entries are N(0, dt_k): the sample variance / dt_k is within 4 standard errors of 1
    (chi-square: SE = sqrt(2/N)) and consecutive fine steps are uncorrelated. Control: a
    bridge with spread sqrt(h) instead of sqrt(h/2) gives variance 1.5 dt_k, rejected."""
    dt0, n_steps0, m = 0.1, 10, 3
    levels = [coupled_increments(7, 0, k, 64, n_steps0, m, dt0) for k in range(4)]
    for k in range(1, 4):
        fine, coarse = levels[k], levels[k - 1]
        assert fine.shape == (64, n_steps0 * 2 ** k, 2, m, m)
        np.testing.assert_allclose(fine[:, 0::2] + fine[:, 1::2], coarse, atol=1e-15)
    for k, dW in enumerate(levels):
        x = dW.ravel() / np.sqrt(dt0 / 2 ** k)
        assert abs(x.var() - 1.0) < 4 * np.sqrt(2.0 / x.size), (k, x.var())
        a, b = dW[:, 0::2].ravel(), dW[:, 1::2].ravel()
        if k:
            assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(a.size)
    # slicing a block's paths (memory) continues the same streams: identical values
    gens = [np.random.Generator(np.random.PCG64(np.random.SeedSequence(7, spawn_key=(0, j))))
            for j in range(3)]
    sliced = np.concatenate([refine_increments(gens, k, n_steps0, m, dt0) for k in (10, 1, 53)])
    np.testing.assert_array_equal(sliced, levels[2])
    st, death = run_level(ATT_STRONG, V3, t_end=1.0, dt0=0.1, level=2, n_paths=300, seed=4)
    st2, death2 = run_level(ATT_STRONG, V3, t_end=1.0, dt0=0.1, level=2, n_paths=300, seed=4,
                            max_slice_values=5000)
    np.testing.assert_array_equal(st, st2)
    np.testing.assert_array_equal(death, death2)
    assert st.any()  # the comparison is not vacuous
    # deterministic in (seed, block, level): a rerun is identical, another block differs
    np.testing.assert_array_equal(coupled_increments(7, 0, 2, 64, n_steps0, m, dt0), levels[2])
    assert not np.array_equal(coupled_increments(7, 1, 2, 64, n_steps0, m, dt0), levels[2])
    # control: the wrong bridge spread
    X = levels[0]
    h = dt0 / 2
    xi = np.random.default_rng(0).standard_normal(X.shape) * np.sqrt(h)
    wrong = np.concatenate([X / 2 + xi, X / 2 - xi], axis=1).ravel() / np.sqrt(h)
    assert abs(wrong.var() - 1.0) > 4 * np.sqrt(2.0 / wrong.size)


@pytest.mark.parametrize("cells, n", [((0.011, 0.001, 0.002), 2000),
                                      ((0.10, 0.01, 0.02), 2000)])
def test_paired_interval_coverage(cells, n):
    """4000 multinomial samples of (both, first only, second only, neither): the 95 %
    interval covers the true P(A) − P(B) at ≥ 93.5 % (nominal − 3 binomial SE of the
    coverage). Control: a value 3 standard errors of the difference away is covered
    < 60 % of the time."""
    probs = list(cells) + [1 - sum(cells)]
    true = cells[1] - cells[2]
    sd = np.sqrt((cells[1] + cells[2] - true ** 2) / n)
    draws = np.random.default_rng(1).multinomial(n, probs, size=4000)
    cis = [paired_difference_ci_counts(*c)[1:] for c in draws]
    coverage = np.mean([lo <= true <= hi for lo, hi in cis])
    assert coverage >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / 4000), coverage
    off = np.mean([lo <= true + 3 * sd <= hi for lo, hi in cis])
    assert off < 0.6, off
    # the array form agrees with the counts form
    first = np.array([1, 1, 0, 0, 1], bool)
    second = np.array([1, 0, 1, 0, 1], bool)
    assert paired_difference_ci(first, second) == paired_difference_ci_counts(2, 1, 1, 1)


def test_coupled_difference_mean_and_variance():
    """P(dt) − P(dt/2) at γ = 0.6, τ0 = 0.5, dt = 0.05 (P ≈ 15 %): the coupled estimate
    (4000 paths) agrees with two independent runs of 20 000 paths each (|z| < 3, z from the
    two standard errors), and its standard error is under half that of independent runs at
    the same 4000 paths. Control: the independent fine run at γ × 1.15 is rejected (|z| > 3)."""
    n, big = 4000, 20_000
    coarse, _ = run_level(ATT_STRONG, V3, t_end=1.0, dt0=0.05, level=0, n_paths=n, seed=3)
    fine, _ = run_level(ATT_STRONG, V3, t_end=1.0, dt0=0.05, level=1, n_paths=n, seed=3)
    a, b = coarse != 0, fine != 0
    diff = a.mean() - b.mean()
    assert paired_difference_ci(a, b)[0] == pytest.approx(diff)
    se_paired = np.sqrt(((a != b).mean() - diff ** 2) / n)

    def dead(model, dt, seed):
        ds = sde.simulate(model, V3, t_end=1.0, dt=dt, n_paths=big, seed=seed, method="spd",
                          save_every=10 ** 9, progress=False)
        return np.mean(ds.status.values != 0)

    p1, p2 = dead(ATT_STRONG, 0.05, 1), dead(ATT_STRONG, 0.025, 2)
    se_big = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / big)
    z = (diff - (p1 - p2)) / np.hypot(se_paired, se_big)
    assert abs(z) < 3, (diff, p1 - p2, z)
    se_independent = np.sqrt((a.mean() * (1 - a.mean()) + b.mean() * (1 - b.mean())) / n)
    assert se_paired < 0.5 * se_independent, (se_paired, se_independent)
    control = dead(sde.ShapedAttention(gamma=0.6 * 1.15, tau0=0.5), 0.025, 4)
    z_control = (diff - (p1 - control)) / np.hypot(se_paired, se_big)
    assert abs(z_control) > 3, z_control


def test_the_rule():
    """verdict(): inside ±tol converges; a floor above tol needs more paths at once; a
    resolved change at the last halving is still moving; a wide interval containing 0 at
    the last halving needs more paths; otherwise halve again (None)."""
    assert verdict(-0.0008, 0.0005, 0.001, 0.0004, last=False) == CONVERGED
    assert verdict(-0.0008, 0.0005, 0.001, 0.0019, last=False) == CONVERGED
    assert verdict(-0.0030, 0.0010, 0.001, 0.0019, last=False) == MORE_PATHS
    assert verdict(-0.0030, -0.0015, 0.001, 0.0004, last=False) is None
    assert verdict(-0.0030, -0.0015, 0.001, 0.0004, last=True) == STILL_MOVING
    assert verdict(-0.0030, 0.0012, 0.001, 0.0004, last=True) == MORE_PATHS
    # the floor: no discordant pair, about z²/n wide
    assert resolution_floor(20, 2000) == pytest.approx(3.84 / 2000, rel=0.1)
    assert "paired 95 %" in criterion() and "0.1 P(dt)" in criterion()


def test_weak_attention_case_at_2000_paths_does_not_claim_a_wrong_value():
    """Attention γ = 0.5, τ0 = 1, m = 3, ρ0 = 0.2, T = 1, dt0 = 0.1, 2000 paths, seed 0.
    Independent SPD runs of 2·10⁵ paths give 1.31 % [1.26, 1.36] at dt = 0.003125 and 1.30 %
    at 0.00625: the estimate must say not converged, or give an interval containing
    1.3 %. With the default tolerance (max(0.001, 10 %)) 2000 paths cannot resolve the
    change (the floor ≈ 0.19 % > 0.1 %): more paths needed, after one halving."""
    r = blowup_probability(ATT, V3, t_end=1.0, dt0=0.1, n_paths=2000, seed=0,
                           progress=False)
    assert not r.converged or r.ci_low <= 0.013 <= r.ci_high
    assert r.status == MORE_PATHS and r.paths_needed > 2000
    row = r.sequence[1]
    lo, hi = row["difference_ci"]
    assert lo <= row["difference"] <= hi and hi - lo > 2 * row["tolerance"]
    assert "difference" not in r.sequence[0]


#: dead counts per level measured with 2000 coupled SPD paths: shaped attention γ = 0.9,
#: τ0 = 0.5, m = 8, ρ0 = 0.2, T = 1, dt0 = 0.05, seed 0 (P(dt) rises, then falls steadily)
HUMP = (1098, 1164, 1146, 1091, 1042, 976, 922)


def test_a_hump_in_p_of_dt_is_not_called_converged(monkeypatch):
    """The rule on the measured non-monotone sequence above (each level's dead set nested in
    the previous one's, so the discordant paths are the differences): the default rule
    (bias at weak order ½, two halvings in a row) says still moving. Control: the rule of
    weak order 1 and one halving declares 0.582 converged at dt = 0.025, where the finest
    step gives 0.461 and the sequence is still falling."""
    import sde.blowup as blowup

    n = 2000

    def fake_level(model, V0, *, level, n_paths, **kw):
        status = np.zeros(n_paths, dtype=np.int8)
        status[:HUMP[level]] = 2
        return status, np.where(status != 0, 0.5, np.inf)

    monkeypatch.setattr(blowup, "run_level", fake_level)
    kw = dict(t_end=1.0, dt0=0.05, n_paths=n, seed=0, progress=False)
    model = sde.ShapedAttention(0.9, 0.5)
    r = blowup.blowup_probability(model, sde.equicorrelated(8, 0.2), **kw)
    assert r.status == STILL_MOVING and len(r.sequence) == len(HUMP)
    assert r.probability == HUMP[-1] / n
    old = blowup.blowup_probability(model, sde.equicorrelated(8, 0.2), order=1, confirm=1,
                                    **kw)
    assert old.converged and old.dt == 0.025 and old.probability == HUMP[1] / n   # control


@pytest.mark.slow
def test_the_hump_case_runs_as_measured():
    """The real coupled runs behind HUMP: not converged at 2000 paths, and the finest step's
    estimate is below the coarse hump (about 30 s)."""
    r = blowup_probability(sde.ShapedAttention(0.9, 0.5), sde.equicorrelated(8, 0.2),
                           t_end=1.0, dt0=0.05, n_paths=2000, seed=0, progress=False)
    assert not r.converged and len(r.sequence) == len(HUMP)
    assert r.sequence[-1]["ci_high"] < r.sequence[1]["ci_low"]


def test_masked_coupled_runs_have_the_law_of_masked_simulate():
    """Coupled runs take the realised mask: with a causal mask, level 0 of the coupled runs and
    an independent masked ``simulate`` (SPD, same dt) lose the same fraction of paths
    (two-proportion z, |z| < 3: measured 0.18 against 0.18 at 4000 paths). Control: the
    complete-mask model at the same γ, τ0 blows up more often (measured 0.22): |z| > 3."""
    n = 8000
    causal = sde.ShapedAttention(0.8, 0.5, mask="causal")
    complete = sde.ShapedAttention(0.8, 0.5)
    ref = sde.simulate(causal, V3, t_end=1.0, dt=0.05, n_paths=n, seed=2, method="spd",
                       progress=False)
    p_ref = float((ref.status.values != 0).mean())

    def z(model):
        st, _ = run_level(model, V3, t_end=1.0, dt0=0.05, level=0, n_paths=n, seed=1)
        p = float((st != 0).mean())
        pooled = (p + p_ref) / 2
        return (p - p_ref) / np.sqrt(2 * pooled * (1 - pooled) / n)

    assert abs(z(causal)) < 3.0
    assert abs(z(complete)) > 3.0                                   # control


@pytest.mark.slow
def test_weak_attention_case_with_enough_paths():
    """The same case at 20 000 paths and 7 halvings (measured: the changes −0.40, −0.20,
    −0.12, −0.06, −0.05, −0.03, +0.00 % shrink; the last bias interval is inside the
    tolerance, the one before it not: unconfirmed at dt = 0.00078, 1.22 % [1.07, 1.38]).
    Never converged at a wrong value: the finest interval contains 1.3 %."""
    r = blowup_probability(ATT, V3, t_end=1.0, dt0=0.1, n_paths=20_000, seed=0,
                           max_halvings=7, progress=False)
    assert r.ci_low <= 0.013 <= r.ci_high
    assert r.converged or r.status in (UNCONFIRMED, MORE_PATHS)


def test_lnr_mlp_never_blows_up():
    """P = 0 at every dt; at 12 000 paths the floor (≈ 0.032 %, times 2.41 for the bias at
    weak order ½: ≈ 0.077 %) is inside the default atol, at two halvings in a row."""
    r = blowup_probability(sde.ShapedMLP(), sde.equicorrelated(2, 0.3), t_end=1.0, dt0=0.1,
                           n_paths=12_000, seed=1, progress=False)
    assert r.converged and r.probability == 0.0 and r.ci_low == 0.0
    assert len(r.sequence) == 3 and r.dt == 0.025
    assert all(row["n_dead"] == 0 for row in r.sequence)
    assert r.sequence[1]["difference"] == 0.0
    assert r.limit_ci[0] == 0.0 and r.limit_ci[1] < 0.002
    assert r.attrs["method"] == "spd" and r.attrs["covsde_version"]
    # 5000 paths cannot resolve 0.1 % (2.41 × 0.077 %): said so, not "converged"
    r = blowup_probability(sde.ShapedMLP(), sde.equicorrelated(2, 0.3), t_end=1.0, dt0=0.1,
                           n_paths=5000, seed=1, progress=False)
    assert r.status == MORE_PATHS and r.paths_needed > 5000


@dataclasses.dataclass(frozen=True)
class DriftOnlyAttention(Model):
    """The attention drift k · b_att(V) with no noise: the SDE's deterministic limit."""

    k: float
    arch = "drift-only-attention (test)"

    def _limit(self):
        return LimitCoefficients(att_drift=self.k)


def explosion_time(k, m, rho0, v0=1.0):
    """T* of v' = k α v³ with α = (m − 1)(1 − ρ0)²/m² (the equicorrelated reduction)."""
    return m * m / (2.0 * k * (m - 1) * (1.0 - rho0) ** 2 * v0 * v0)


K_DRIFT = 4.0          # γ = 1, τ0 = 0.5
T_STAR = explosion_time(K_DRIFT, 3, 0.2)   # 0.8789…


@pytest.mark.parametrize("method", ["euler", "spd", "ode"])
def test_death_time_converges_to_the_ode_explosion_time(method):
    """Every path dies (status 2) after T* and the error falls at first order in dt (a death
    is seen at the end of a step; near the singularity even RK4 lags by about a step: its
    error stays under 2 dt). Bound 1e4 is reached at T*(1 − 1e-8)."""
    model = DriftOnlyAttention(K_DRIFT)
    errors = []
    for dt in (0.004, 0.002, 0.001):
        kw = {} if method == "ode" else {"n_paths": 3}
        ds = sde.simulate(model, V3, t_end=1.0, dt=dt, seed=0, save_every=10 ** 9,
                          method=method, **kw)
        assert (ds.status.values == 2).all()
        tau = np.unique(ds.death_time.values)
        assert tau.size == 1          # deterministic: every path dies at the same step
        errors.append(float(tau[0]) - T_STAR)
        assert 0.0 < errors[-1] < (2 if method == "ode" else 10) * dt
    if method != "ode":  # first order: each halving of dt gives an error ≥ 1.6× smaller
        assert errors[1] < errors[0] / 1.6 and errors[2] < errors[1] / 1.6, errors
    # (RK4: its death is within 2 steps of T*, whose position on the grid sets the error)
    # control: the drift coefficient off by 15 % moves the death time by ≈ 0.13, far outside
    ds = sde.simulate(DriftOnlyAttention(1.15 * K_DRIFT), V3, t_end=1.0, dt=0.001, seed=0,
                      save_every=10 ** 9, method=method, **({} if method == "ode" else
                                                            {"n_paths": 3}))
    assert not (0.0 < float(ds.death_time.values.min()) - T_STAR < 10 * 0.001)


@pytest.mark.parametrize("t_end, expected, dt0", [(1.0, 1.0, 0.05), (0.75, 0.0, 0.005)])
def test_blowup_probability_of_the_deterministic_limit(t_end, expected, dt0):
    """P(τ ≤ T) = 1{T ≥ T*}: converged to exactly 1 for T = 1 > T* ≈ 0.879 and to 0 for
    T = 0.75. Controls (coefficient ±15 %): k / 1.15 (T* = 1.011) gives 0 at T = 1; k × 1.15
    (T* = 0.764) gives 1 at T = 0.8, where k gives 0.

    A limitation this case shows: a deterministic death time is a step function of dt and
    every scheme dies late (by ≈ 4 dt for SPD), so the halving criterion can agree on 0 at
    coarse steps that do not resolve T − T* (from dt0 = 0.05 the k × 1.15 control at
    T = 0.8 converges, wrongly, to 0). The T < T* case therefore starts at dt0 = 0.005.
    """
    def run(k, T):
        return blowup_probability(DriftOnlyAttention(k), V3, t_end=T, dt0=dt0,
                                  n_paths=200, seed=3, atol=0.1, progress=False)

    r = run(K_DRIFT, t_end)
    assert r.converged and r.probability == expected
    assert r.sequence[-1]["n_blew_up"] == r.sequence[-1]["n_dead"]
    if expected == 1.0:
        assert explosion_time(K_DRIFT / 1.15, 3, 0.2) > t_end
        assert run(K_DRIFT / 1.15, t_end).probability == 0.0
    else:
        assert run(K_DRIFT, 0.8).probability == 0.0
        control = run(1.15 * K_DRIFT, 0.8)
        assert control.converged and control.probability == 1.0


def test_euler_in_the_strong_regime_is_not_converged():
    r = blowup_probability(sde.ShapedAttention(gamma=1.0, tau0=0.5), V3, t_end=1.0,
                           dt0=0.02, n_paths=4000, seed=2, method="euler", max_halvings=1,
                           progress=False)
    assert not r.converged and len(r.sequence) == 2 and r.status == STILL_MOVING
    assert r.sequence[0]["n_left_cone"] > 0


def test_stability_grid():
    df = stability_grid([0.5], [1.0, 2.0], n_paths=500, dt0=0.1, max_halvings=2)
    assert list(df.columns[:3]) == ["gamma", "tau0", "probability"]
    assert len(df) == 2 and df.probability.between(0, 1).all()
    assert set(df.status) <= {CONVERGED, MORE_PATHS, STILL_MOVING}


ARGS = ["blowup", "--arch", "mlp", "--tokens", "2", "--rho0", "0.3", "--t-end", "1",
        "--dt", "0.1", "--paths", "1000", "--seed", "0", "--atol", "0.01"]


def test_cli_table_and_json(capsys):
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "converged" in out and "NOT" not in out and "0.0000" in out
    assert main(ARGS + ["--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    for key in ("probability", "ci_low", "ci_high", "dt", "converged", "status", "sequence",
                "method", "seed", "rtol", "atol", "covsde_version"):
        assert key in obj
    # converged after two halvings in a row inside the tolerance
    assert obj["converged"] is True and obj["probability"] == 0.0 and obj["dt"] == 0.025
    assert obj["order"] == 0.5 and obj["confirm"] == 2
    assert "difference" not in obj["sequence"][0]
    row = obj["sequence"][2]
    assert row["difference"] == 0.0 and len(row["difference_ci"]) == 2
    assert row["difference_ci"][0] <= 0.0 <= row["difference_ci"][1]
    k = 1 / (2 ** 0.5 - 1)   # the bias left at dt for weak order 1/2
    assert row["bias_ci"] == pytest.approx([k * row["difference_ci"][0],
                                            k * row["difference_ci"][1]])


def test_cli_not_converged_exit_0(capsys):
    argv = ["blowup", "--arch", "attention", "--gamma", "1", "--tau0", "0.5", "--tokens", "3",
            "--rho0", "0.2", "--t-end", "1", "--dt", "0.02", "--paths", "4000", "--seed",
            "2", "--method", "euler", "--max-halvings", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NOT CONVERGED" in out and "still moving with dt" in out


def test_cli_more_paths_needed(capsys):
    argv = ["blowup", "--arch", "attention", "--gamma", "0.5", "--tau0", "1", "--tokens", "3",
            "--rho0", "0.2", "--t-end", "1", "--dt", "0.1", "--paths", "2000", "--seed", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NOT CONVERGED" in out and "not converged: more paths needed" in out


def test_cli_bad_input(capsys):
    def edit(flag, value):
        argv = list(ARGS)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
        return argv

    for flag, value in (("--method", "milstein"), ("--t-end", "0"), ("--t-end", "-1"),
                        ("--dt", "0.3"), ("--dt", "2"), ("--dt", "0"), ("--paths", "0"),
                        ("--max-halvings", "0"), ("--max-halvings", "21"), ("--bound", "nan"),
                        ("--rtol", "-1"), ("--atol", "nan")):
        assert main(edit(flag, value)) == 2, (flag, value)
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and flag in err, (flag, value, err)
