"""Collapse measures (docs/theory.md §2.4) on matrices with known answers, and the rank-collapse
figures at a tiny size (files written, one per format, captions defined)."""
import numpy as np
import pytest

from compare.collapse import consensus_distance, token_similarity
from compare.statistics import effective_rank


@pytest.mark.parametrize("m", [2, 5, 16])
def test_measures_on_known_matrices(m):
    ones = np.ones((m, m))
    eye = np.eye(m)
    assert token_similarity(ones) == pytest.approx(1.0)
    assert consensus_distance(ones) == pytest.approx(0.0, abs=1e-8)
    assert token_similarity(eye) == pytest.approx(0.0)
    assert consensus_distance(eye) == pytest.approx(np.sqrt((m - 1) / m))
    rho = 0.3
    V = (1 - rho) * eye + rho * ones
    assert token_similarity(4.0 * V) == pytest.approx(rho)          # scale-free
    # tr(PVP)/tr V = (1 − ρ)(m − 1)/m for the equicorrelated V
    assert consensus_distance(V) == pytest.approx(np.sqrt((1 - rho) * (m - 1) / m))
    # control: a different correlation gives a different answer
    assert abs(token_similarity((1 - 0.35) * eye + 0.35 * ones) - rho) > 0.04


def test_measures_batched_and_nan():
    V = np.stack([np.eye(3), np.full((3, 3), np.nan)])[:, None]      # (2, 1, 3, 3)
    s = token_similarity(V)
    assert s.shape == (2, 1) and s[0, 0] == 0.0 and np.isnan(s[1, 0])
    assert np.isnan(consensus_distance(V)[1, 0])


def test_effective_rank_matches_consensus_story():
    import xarray as xr
    V = np.stack([np.eye(4), np.ones((4, 4)) + 1e-12 * np.eye(4)])[:, None]
    da = xr.DataArray(V, dims=("path", "time", "token_a", "token_b"))
    er = effective_rank(da).values[:, 0]
    assert er[0] == pytest.approx(4.0) and er[1] == pytest.approx(1.0, abs=1e-6)


def test_collapse_figures_tiny(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from compare.figures.collapse import FIGURES, make_collapse_figures

    written = make_collapse_figures(str(tmp_path), size="tiny", log=lambda *_: None)
    names = sorted(p.split("/")[-1] for p in written)
    assert names == sorted(f"{k}.{e}" for k in FIGURES for e in ("png", "pdf"))
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)


def test_collapse_measures_as_compare_statistics(tmp_path, capsys):
    """``tokensim`` and ``consensus`` are --stat names: compute_stat matches the direct
    functions, and covsde compare accepts them on two finite runs."""
    import json

    from compare.cli import main
    from compare.statistics import compute_stat, parse_stat
    from finite import sample
    from finite.unshaped import AttentionOnly
    from sde.io import write_dataset

    ds = sample(AttentionOnly(mask="causal"), np.eye(4), width=16, depth=3, n_paths=40, seed=1)
    V = ds.V
    np.testing.assert_array_equal(compute_stat(V, "tokensim").values,
                                  token_similarity(V.values))
    np.testing.assert_array_equal(compute_stat(V, "consensus").values,
                                  consensus_distance(V.values))
    with pytest.raises(Exception, match="takes no token indices"):
        parse_stat("tokensim:0,1", 4)
    a, b = tmp_path / "a.nc", tmp_path / "b.nc"
    write_dataset(ds, str(a))
    write_dataset(sample(AttentionOnly(), np.eye(4), width=16, depth=3, n_paths=40, seed=2),
                  str(b))
    rc = main(["compare", str(a), str(b), "--stat", "tokensim", "--stat", "consensus",
               "--json", "--boot", "200"])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out)
    stats = {r["stat"] for r in doc["rows"]}
    assert stats == {"tokensim", "consensus"}
    # the causal and complete masks differ in law: both measures see it at the last layer
    last = [r for r in doc["rows"] if r["time"] == max(x["time"] for x in doc["rows"])]
    assert all(r["ks_pvalue"] < 1e-6 for r in last)
