"""The weak-error convergence study (compare.convergence, ``covsde convergence``).

- The rate fit (GLS of e(n) = C n^-r with the covariance of a shared SDE sample): over 300
  synthetic studies with known rate its 95 % interval covers the true rate at the nominal
  rate (binomial 99 % band), and a wrong rate (true + 0.3) is covered far less (control).
- A small study on the Li–Nica–Roy MLP runs end to end, is reproducible, and its JSON has the
  documented structure; bad input is one line, exit 2.
- Negative control on real samples: against an SDE with a perturbed coefficient the weak
  error does not vanish with n (every width resolves e ≠ 0 of one sign).
- The study's finite-network means of exp(−V_00) on the Li–Nica–Roy MLP agree with the exact
  values (compare.lnr_diagonal) at widths 8–32, and those of the other shaping do not (control).
- Slow: the Li–Nica–Roy rate study (docs/theory.md §6.8) with an interval of ±0.15.
"""
import json

import numpy as np
import pytest
import scipy.stats

import sde
from compare.cli import main
from compare.convergence import ConvergenceResult, convergence_study, fit_rate

WIDTHS = np.array([8, 16, 32, 64, 128, 256])


def _synthetic(rng, rate, amp=0.3, se_rel=0.15, var_s_frac=0.3):
    """Errors C n^-r with noise of relative size se_rel at the largest width, part of it
    shared (the SDE sample)."""
    e = amp * WIDTHS ** -rate
    se = se_rel * e[-1] * np.sqrt(WIDTHS / WIDTHS[-1]) ** 0  # equal absolute noise
    var_s = var_s_frac * se ** 2
    var_f = (1 - var_s_frac) * se ** 2
    cov = np.diag(var_f) + var_s[0]
    noise = rng.normal(0, np.sqrt(var_f)) + rng.normal(0, np.sqrt(var_s[0]))
    return e + noise, cov


def test_rate_fit_covers_at_nominal_rate_and_wrong_rate_not():
    rng = np.random.default_rng(5)
    n_rep, true = 300, 0.5
    cover = wrong = 0
    for _ in range(n_rep):
        e, cov = _synthetic(rng, true)
        fit = fit_rate(WIDTHS, e, cov)
        lo, hi = fit["rate_ci"]
        cover += lo <= true <= hi
        wrong += lo <= true + 0.3 <= hi
    band = scipy.stats.binom.ppf([0.005, 0.995], n_rep, 0.95)
    assert band[0] <= cover <= band[1], cover
    assert wrong < band[0] / 2, wrong


def test_rate_fit_refuses_when_nothing_is_resolved():
    cov = np.eye(4) * 1e-2
    fit = fit_rate([8, 16, 32, 64], [1e-3, -1e-3, 2e-3, 0.0], cov)
    assert np.isnan(fit["rate"]) and "no width resolves" in fit["note"]


MLP = sde.ShapedMLP(c_plus=0.0, c_minus=-1.0)
V0 = sde.equicorrelated(2, 0.2)


def _small(seed=0, model=MLP, **kw):
    args = dict(widths=[8, 16, 32], t_end=1.0, times=[1.0], n_paths=1500, sde_paths=1500,
                seed=seed, dt=1 / 128, functionals=["corr:0,1", "exp:0", "exceed:3"],
                progress=False)
    args.update(kw)
    return convergence_study(model, V0, **args)


def test_small_study_structure_and_reproducibility():
    r = _small()
    doc = r.to_dict()
    assert doc["widths"] == [8, 16, 32] and doc["seed"] == 0 and "version" in doc
    assert len(doc["results"]) == 3
    for row in doc["results"]:
        assert row["widths"] == [8, 16, 32] and len(row["errors"]) == 3
        for est, lo, hi in row["errors"]:
            assert lo <= est <= hi
        assert {"rate", "rate_ci", "dt_check", "sde_mean", "finite_means"} <= set(row)
    again = _small()
    assert json.dumps(again.rows) == json.dumps(r.rows)  # (NaN != NaN as objects)
    back = ConvergenceResult.from_dict(json.loads(json.dumps(doc)))
    assert back.row("exp:0", 1.0)["errors"] == r.row("exp:0", 1.0)["errors"]


def test_exceedance_rows_state_the_sde_monitoring_grid():
    from compare.convergence import monitoring

    row = _small().row("exceed:3", 1.0)
    assert row["sde_monitoring"] == 1 / 128 and row["monitoring_note"] == ""  # 1/(4·32)
    assert "sde_monitoring" not in _small().row("exp:0", 1.0)
    assert monitoring(1 / 64, [8, 16, 32])["monitoring_note"].startswith(
        "the SDE is monitored every 0.015625")
    assert monitoring(1 / 2048, [8, 1024])["monitoring_note"]  # the save stride of 8 at 2^-14


def test_perturbed_sde_error_does_not_vanish():
    """Negative control: the SDE of c₋ = −1.3 ((c₊ − c₋)² × 1.69) is not the limit of the
    c₋ = −1 networks: ρ_01's weak error at ρ0 = −0.5, t = 1 is resolved, of one sign, at
    every width (measured ≈ +0.07 each, z > 4 with 3000 paths per side)."""
    wrong = sde.ShapedMLP(c_plus=0.0, c_minus=-1.3)
    r = convergence_study(MLP, sde.equicorrelated(2, -0.5), sde_model=wrong, widths=[8, 16, 32],
                          t_end=1.0, times=[1.0], n_paths=3000, sde_paths=3000, seed=1,
                          dt=1 / 128, functionals=["corr:0,1"], dt_check_paths=0,
                          progress=False)
    errs = np.array(r.row("corr:0,1", 1.0)["errors"])
    assert (errs[:, 1] > 0).all() or (errs[:, 2] < 0).all(), errs


def test_study_means_of_exp_v00_are_the_exact_ones():
    """Fast companion of the slow rate test: the study's finite means of exp(−V_00) (symmetric
    shaping, ρ0 = −0.5, widths 8–32, t = 0.5 and 1, 2·10⁴ paths) agree with the exact
    Mellin–Barnes values (z-test, Bonferroni over 6), and the exact values of the default
    shaping (c₊ = 0, c₋ = −1: e(8) larger by 0.009) are rejected at some width (measured
    |z| ≈ 5 at n = 8)."""
    from compare.lnr_diagonal import finite_mean_exp

    model = sde.ShapedMLP(c_plus=0.5, c_minus=-0.5)
    r = convergence_study(model, sde.equicorrelated(2, -0.5), widths=[8, 16, 32], t_end=1.0,
                          times=[0.5, 1.0], n_paths=20_000, sde_paths=2000, dt=1 / 256,
                          seed=5, functionals=["exp:0"], dt_check_paths=0, progress=False)
    alpha = 0.01 / 6
    z_right, z_control = [], []
    for t in (0.5, 1.0):
        row = r.row("exp:0", t)
        for n, (mean, lo, hi) in zip(row["widths"], row["finite_means"]):
            se = (hi - lo) / (2 * 1.959964)
            z_right.append((mean - finite_mean_exp(0.5, -0.5, n, t)) / se)
            z_control.append((mean - finite_mean_exp(0.0, -1.0, n, t)) / se)
    p_right = 2 * scipy.stats.norm.sf(np.abs(z_right))
    p_control = 2 * scipy.stats.norm.sf(np.abs(z_control))
    assert p_right.min() > alpha, z_right
    assert p_control.min() < alpha, z_control


@pytest.mark.parametrize("argv, msg", [
    (["--widths", "8"], "at least 2 widths"),
    (["--widths", "8,12", "--times", "0.1"], "whole number of layers"),
    (["--widths", "8,16", "--paths", "100,100,100"], "one count per width"),
    (["--widths", "8,x"], "comma-separated integers"),
    (["--widths", "8,16", "--f", "exceed:1e6"], "below the censoring bound"),
])
def test_cli_bad_input(argv, msg, capsys):
    base = ["convergence", "--arch", "mlp", "--tokens", "2", "--rho0", "0.2", "--t-end", "1",
            "--paths", "100", "--seed", "0"]
    args = base + argv
    if "--paths" in argv:
        i = base.index("--paths")
        args = base[:i] + base[i + 2:] + argv
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_cli_json(capsys, tmp_path):
    png = str(tmp_path / "c.png")
    assert main(["convergence", "--arch", "mlp", "--tokens", "2", "--rho0", "0.2", "--t-end",
                 "0.5", "--widths", "8,16,32", "--paths", "300", "--seed", "2", "--times",
                 "0.5", "--dt", "0.0078125", "--f", "exp:0", "--json", "--plot", png]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["results"]
    assert row["functional"] == "exp:0" and len(row["errors"]) == 3
    assert len(row["rate_ci"]) == 2
    import os

    assert os.path.getsize(png) > 1000


def test_corrected_model_scales_the_mlp_drift_by_g_n():
    from compare.convergence import corrected_model

    V = np.array([[1.3, 0.4], [0.4, 0.8]])
    for n in (8, 64, 1024):
        sp, sm = 1.0, 1.0 - 1.0 / np.sqrt(n)
        g = 2.0 / (sp * sp + sm * sm)
        c = corrected_model(MLP, n)
        np.testing.assert_allclose(c.drift(V), g * MLP.drift(V), rtol=1e-12)
        np.testing.assert_allclose(c.diffusion(V), MLP.diffusion(V), rtol=1e-12)
    with pytest.raises(sde.CovsdeInputError, match="Li–Nica–Roy"):
        corrected_model(sde.ShapedAttention(0.5, 1.0), 8)


def test_cli_time_correction_refused_for_attention(capsys):
    assert main(["convergence", "--arch", "attention", "--gamma", "0.5", "--tau0", "1",
                 "--tokens", "2", "--rho0", "0.2", "--t-end", "1", "--widths", "8,16",
                 "--paths", "10", "--seed", "0", "--time-correction"]) == 2
    assert "Li–Nica–Roy" in capsys.readouterr().err


@pytest.mark.slow
def test_lnr_rate_tells_one_over_n_from_one_over_sqrt_n():
    """Li–Nica–Roy MLP with symmetric shaping (c₊ = 0.5, c₋ = −0.5: c₊ + c₋ = 0, predicted
    rate 1, docs/theory.md §6.8), ρ0 = −0.5, ρ_01 at t = 1, widths 8–128. Sized from the
    measured study (seed 0, 10⁵ paths per width, 10⁵ SDE paths: rate 0.959 [0.809, 1.109],
    ±0.150): 1.5·10⁵ and 3·10⁵ paths here give ≈ ±0.12. The interval must be at most ±0.15,
    contain 1 and exclude the alternative 1/2 (the control: what an asymmetric shaping's
    drift error would give)."""
    r = convergence_study(sde.ShapedMLP(c_plus=0.5, c_minus=-0.5), sde.equicorrelated(2, -0.5),
                          widths=[8, 16, 32, 64, 128], t_end=1.0, times=[1.0],
                          n_paths=150_000, sde_paths=300_000, seed=3,
                          functionals=["corr:0,1"], dt_check_paths=0, progress=False)
    row = r.row("corr:0,1", 1.0)
    lo, hi = row["rate_ci"]
    assert hi - lo <= 0.30, row
    assert lo <= 1.0 <= hi and lo > 0.5, row


def test_figure_draws_no_line_through_a_rejected_fit():
    import matplotlib

    matplotlib.use("Agg")
    from compare.convergence import ConvergenceResult
    from compare.figures.convergence import plot_weak_errors

    widths = [16, 32, 64]
    row = {"functional": "exceed:100", "time": 1.0, "widths": widths,
           "errors": [[-0.06, -0.065, -0.055], [-0.05, -0.055, -0.045], [-0.01, -0.015, -0.005]],
           "rate": 0.3, "rate_ci": [0.25, 0.35], "amplitude": -0.2, "note": "",
           "fit_p_value": 1e-20}
    r = ConvergenceResult([row], {"V0": np.eye(4).tolist(), "widths": widths})
    fig = plot_weak_errors(r, "exceed:100", model=sde.ShapedAttention(gamma=0.6, tau0=0.8))
    ax = fig.axes[0]
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() in ("-", "--")
                and len(ln.get_xdata()) > 3]  # neither the fit nor the predicted slope
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("no single power fits" in t for t in labels), labels
    assert not any("predicted slope" in t for t in labels), labels
