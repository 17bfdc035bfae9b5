"""Collapse rates (compare/collapse_rate.py, docs/theory.md §2.4d).

* The asymptotic rate of a masked pure-attention stack is log|λ₂(C)| (C the row-normalised
  mask): on sliding w = 1 (m = 4) and causal (m = 8) stacks, the fitted rate's 99.9 % interval
  over the default window (the run's second half) contains it. Controls: the depth 0–2 slope
  falls outside that interval, and so does the known rate × 1.15 (a 15 % perturbation).
* Complete mask: log μ_{d+1} = 3 log μ_d + O(1), so log(−log μ) grows by log 3 per layer
  plus an excess that decays like 3^{−d}: over depths 10–16 the rate's interval lies within
  1e-4 of log 3; log 3 × 1.15 is excluded (control). The same with LayerNorm after each
  attention layer.
* Bad input: one line, exit 2.
"""
import json
import math

import numpy as np
import pytest

from compare.collapse_rate import collapse_rate, fit_rate, mask_asymptotic_rate
from finite import sample
from finite.unshaped import AttentionOnly
from sde import CovsdeInputError
from sde.masks import Mask

LEVEL = 0.999


@pytest.mark.parametrize("kw,m,depth", [({"mask": "sliding", "window": 1}, 4, 60),
                                        ({"mask": "causal"}, 8, 40)])
def test_asymptotic_rate_in_interval_and_early_slope_outside(kw, m, depth):
    ds = sample(AttentionOnly(**kw), np.eye(m), width=16, depth=depth, n_paths=300, seed=7,
                save_every=1, progress=False)
    known = mask_asymptotic_rate(Mask(kw["mask"], kw.get("window", 0)).matrix(m))
    late = collapse_rate(ds, level=LEVEL)
    assert late["window"] == [depth // 2, depth]
    assert late["low"] <= known <= late["high"]
    early = collapse_rate(ds, window=(0, 2), level=LEVEL)["rate"]
    assert not late["low"] <= early <= late["high"]              # control: the transient
    assert not late["low"] <= 1.15 * known <= late["high"]       # control: perturbed rate


@pytest.mark.parametrize("layernorm", [False, True])
def test_complete_mask_triples_log_mu(layernorm):
    ds = sample(AttentionOnly(layernorm=layernorm), np.eye(4), width=16, depth=16,
                n_paths=300, seed=8, save_every=1, progress=False, sampler="literal")
    r = collapse_rate(ds, "loglog-consensus", window=(10, 16), level=LEVEL)
    assert abs(r["low"] - math.log(3)) < 1e-4 and abs(r["high"] - math.log(3)) < 1e-4
    assert not r["low"] <= 1.15 * math.log(3) <= r["high"]
    assert np.median(ds.log_consensus.values[:, -1]) < -1e5      # the carried state's reach
    assert mask_asymptotic_rate(np.ones((4, 4))) < -30           # λ₂ = 0: no finite rate


def test_fit_rate_recovers_a_known_line_and_flags_a_changing_rate():
    rng = np.random.default_rng(0)
    d = np.arange(21)
    q = -0.3 * d + rng.normal(0, 0.05, (400, 21))
    r = fit_rate(q, d)
    assert r["low"] <= -0.3 <= r["high"] and r["note"] == ""
    r2 = fit_rate(-0.01 * d ** 2 + rng.normal(0, 0.05, (400, 21)), d)
    assert "still changing" in r2["note"]


@pytest.mark.parametrize("argv,needle", [
    (["--window", "5", "3"], "window must be two depths"),
    (["--window", "40", "50"], "holds 0 saved depth"),
    (["--stat", "nope"], "stat must be one of"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, argv, needle):
    from compare.cli import main
    from sde.io import write_dataset

    ds = sample(AttentionOnly(mask="causal"), np.eye(4), width=8, depth=6, n_paths=8, seed=1,
                save_every=1, progress=False)
    write_dataset(ds, str(tmp_path / "a.nc"))
    assert main(["collapse-rate", str(tmp_path / "a.nc"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_json(tmp_path, capsys):
    from compare.cli import main
    from sde.io import write_dataset

    ds = sample(AttentionOnly(mask="causal"), np.eye(4), width=8, depth=10, n_paths=20, seed=1,
                save_every=1, progress=False)
    write_dataset(ds, str(tmp_path / "a.nc"))
    assert main(["collapse-rate", str(tmp_path / "a.nc"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window"] == [5, 10] and out["n_paths"] == 20
    assert out["mask_asymptotic_rate"] == pytest.approx(math.log(0.5))


def test_bad_level():
    with pytest.raises(CovsdeInputError, match="level"):
        fit_rate(np.zeros((3, 4)), np.arange(4), level=2.0)


def _post_ln_rate(theta, m, n, depth, paths, seed=3, window=None):
    from finite.unshaped import PostLN
    ds = sample(PostLN(similarity_removal=theta), np.eye(m), width=n, depth=depth,
                n_paths=paths, seed=seed, save_every=1, progress=False)
    return (collapse_rate(ds, "log-dissimilarity", window=window, level=LEVEL),
            collapse_rate(ds, "log-dissimilarity", window=(0, 4), level=LEVEL)["rate"])


def test_post_ln_dissimilarity_halves_per_block():
    """Zhang & Yu's linear (geometric) rate: 1 − ρ̄ of post-LN blocks shrinks by the factor
    1/(1 + (1 − θ)²) per block once tokens are nearly equal (docs/theory.md §2.4d): 1/2 at
    θ = 0. Controls: the depth 0–4 slope and log(1/2) × 1.15 fall outside the interval."""
    late, early = _post_ln_rate(0.0, 8, 32, 24, 100)
    want = -math.log(2.0)
    assert late["low"] <= want <= late["high"]
    assert not late["low"] <= early <= late["high"]
    assert not late["low"] <= 1.15 * want <= late["high"]


@pytest.mark.slow
def test_post_ln_dissimilarity_rate_with_removal():
    """The same at θ = 0.5: log(1/1.25) = −0.223 per block (m = 16, n = 64)."""
    late, early = _post_ln_rate(0.5, 16, 64, 32, 100)
    want = -math.log(1.25)
    assert late["low"] <= want <= late["high"]
    assert not late["low"] <= 1.15 * want <= late["high"]
