"""Attention + LayerNorm equilibria of every rank (Wu et al.; docs/theory.md §2.4e).

The construction of :mod:`finite.ln_equilibria` (rank-one value projectors per head, sharp
block-diagonal queries/keys), m = 3 tokens, H = 3 heads, n = 24, causal mask, β = 4, sampled
literally from Haar-random initial frames (V0 = I):

* every rank k = 1, 2, 3 is reached by some path that has settled (max |V_L − V_{L−100}|
  < 1e-8; measured when written: 91 / 91 / 12 of 200 paths at depth 600, 97 % settled);
* a settled path keeps its rank over the last 100 layers (numerical rank, eigenvalues above
  1e-9 × the largest) and its V does not move;
* the weights are fixed, so the law depends on X0 beyond V0: the default frame is haar;
* controls: the standard stack (Gaussian weights, LN after each layer) and the construction
  without LN both collapse — every path has μ/‖X‖ < 1e-6 by depth 100 — while the
  construction with LN keeps its paths of rank ≥ 2 at μ/‖X‖ > 0.1.
"""
import numpy as np
import pytest

from compare.collapse import consensus_distance
from finite import sample
from finite.ln_equilibria import equilibrium_weights, numerical_rank, write_weights
from finite.unshaped import AttentionOnly
from sde import CovsdeInputError

M, H, N, BETA = 3, 3, 24, 4.0


def _model(tmp_path, **kw):
    q, k, v = write_weights(str(tmp_path), N, H, BETA, seed=0)
    return AttentionOnly(layernorm=True, heads=H, mask="causal", value_init=v, query_init=q,
                         key_init=k, **kw)


def test_every_rank_reached_and_kept(tmp_path):
    ds = sample(_model(tmp_path), np.eye(M), width=N, depth=400, n_paths=120, seed=1,
                save_every=1, progress=False)
    assert ds.attrs["initial_x"] == "haar" and ds.attrs["sampler"] == "literal"
    V = ds.V.values
    rank = numerical_rank(V)
    moved = np.abs(V[:, -1] - V[:, -101]).max(axis=(1, 2))
    settled = moved < 1e-8
    assert settled.mean() > 0.5
    final = rank[:, -1]
    for k in range(1, M + 1):
        assert np.any(settled & (final == k)), (k, np.bincount(final[settled]))
    assert np.all(rank[settled, -101:] == final[settled, None])
    mu = consensus_distance(V[:, -1])
    assert np.all(mu[settled & (final >= 2)] > 0.1)


@pytest.mark.parametrize("which", ["gaussian weights with LN", "construction without LN"])
def test_collapse_controls(tmp_path, which):
    if which.startswith("gaussian"):
        model = AttentionOnly(layernorm=True, heads=H, mask="causal")
    else:
        model = _model(tmp_path).replace(layernorm=False)
    ds = sample(model, np.eye(M), width=N, depth=100, n_paths=60, seed=2, progress=False)
    assert np.all(consensus_distance(ds.V.values[:, -1]) < 1e-6)


def test_weights_shape_and_errors():
    WQ, WK, Mv = equilibrium_weights(N, H, BETA)
    assert WQ.shape == WK.shape == Mv.shape == (N, N)
    b = N // H
    for h in range(H):
        blk = Mv[h * b:(h + 1) * b, h * b:(h + 1) * b]
        np.testing.assert_allclose(blk @ blk, blk, atol=1e-14)            # a projector
        assert np.trace(blk) == pytest.approx(1.0)                        # of rank one
        assert abs(np.ones(b) @ blk).max() < 1e-14                         # LN-centred
    assert np.count_nonzero(Mv) == sum(np.count_nonzero(Mv[h * b:(h + 1) * b, h * b:(h + 1) * b])
                                       for h in range(H))
    with pytest.raises(CovsdeInputError, match="beta must be"):
        equilibrium_weights(N, H, 0.0)
    with pytest.raises(CovsdeInputError, match="multiple of heads"):
        equilibrium_weights(25, H, 1.0)
