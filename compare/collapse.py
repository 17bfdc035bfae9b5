"""Collapse measures (docs/theory.md §2.4), exact functions of V = X Xᵀ/n.

Arrays: V is (..., m, m); results have V's leading shape. NaN entries (dead paths) give NaN.

* token similarity ρ̄ = mean_{a<b} ρ_ab (the mean cosine similarity of token vectors);
* consensus distance μ(X)/‖X‖_F = sqrt(tr(P V P)/tr V), P = I − 11ᵀ/m (distance of X from the
  rank-one subspace 1 x̄ᵀ, relative to its norm; round-off below 0 is clipped);
* the effective rank lives in :func:`compare.statistics.effective_rank`.
"""
import numpy as np


def token_similarity(V):
    V = np.asarray(V, dtype=float)
    d = np.sqrt(np.einsum("...ii->...i", V))
    with np.errstate(invalid="ignore", divide="ignore"):
        R = V / d[..., :, None] / d[..., None, :]
    iu = np.triu_indices(V.shape[-1], 1)
    return R[..., iu[0], iu[1]].mean(axis=-1)


def consensus_distance(V):
    V = np.asarray(V, dtype=float)
    m = V.shape[-1]
    trV = np.einsum("...ii", V)
    # tr(P V P) = tr V − 1ᵀV1/m
    num = trV - V.sum(axis=(-1, -2)) / m
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip(num, 0.0, None) / trV)
