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
    from compare.collapse_figures import CAPTIONS, make_collapse_figures

    written = make_collapse_figures(str(tmp_path), size="tiny", log=lambda *_: None)
    names = sorted(p.split("/")[-1] for p in written)
    assert names == sorted(f"{k}.{e}" for k in CAPTIONS for e in ("png", "pdf"))
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
