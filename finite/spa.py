"""E-SPA and U-SPA (He et al.; docs/theory.md §2.4): target kernel schedules and the attention
matrices that realise them.

Layer ℓ = 1 … L of a depth-L stack applies ``A_ℓ = L_ℓ L_{ℓ−1}^{-1}`` with ``L_ℓ L_ℓᵀ = Σ_ℓ``
(lower triangular, hence causal), so that the width-first kernel map
``Σ_ℓ = A_ℓ Σ_{ℓ−1} A_ℓᵀ`` walks the schedule from ``Σ_0 = I``:

* E-SPA: ``Σ_ℓ(i, j) = exp(−γ_ℓ |i − j|)``, ``1 − e^{−2γ_ℓ} = (1 − e^{−2γ_L})^{ℓ/L}``;
* U-SPA: ``Σ_ℓ = (1 − ρ_ℓ) I + ρ_ℓ 11ᵀ``, ``1 − ρ_ℓ = (1 − ρ_L)^{ℓ/L}``.

The finite layer realises ``A_ℓ`` as softmax attention with W^Q = 0 and the bias
``B_ℓ = log P_ℓ``, ``P_ℓ = D_ℓ^{-1} A_ℓ`` (``D_ℓ`` = diag of the row sums, −∞ where
``A_ℓ = 0``), its output multiplied by ``D_ℓ`` (He et al.'s location-dependent rescaling).
"""
import numpy as np

from sde.errors import CovsdeInputError


def kernel_schedule(kind, final, m, depth):
    """Σ_0 … Σ_L, shape (L + 1, m, m)."""
    ell = np.arange(depth + 1) / depth
    i = np.arange(m)
    if kind == "e-spa":
        r = np.sqrt(1.0 - (1.0 - np.exp(-2.0 * final)) ** ell)     # e^{−γ_ℓ}
        lag = np.abs(i[:, None] - i[None, :])
        return np.where(lag == 0, 1.0, r[:, None, None] ** lag)
    if kind == "u-spa":
        rho = 1.0 - (1.0 - final) ** ell
        return (1.0 - rho)[:, None, None] * np.eye(m) + rho[:, None, None]
    raise CovsdeInputError(f"no kernel schedule for attention {kind!r}")


def attention_matrices(kind, final, m, depth):
    """A_1 … A_L, shape (L, m, m): ``A_ℓ = L_ℓ L_{ℓ−1}^{-1}`` (lower triangular, ≥ 0)."""
    S = kernel_schedule(kind, final, m, depth)
    L = np.linalg.cholesky(S)
    return np.stack([np.linalg.solve(L[k - 1].T, L[k].T).T for k in range(1, depth + 1)])


def bias_and_scale(A):
    """(B, D) with ``D ⊙ softmax_rows(B) = A``: ``B = log(A / rowsum)`` (−∞ where A = 0), D the
    row sums (..., m). A must be entrywise ≥ 0 with positive row sums."""
    if np.any(A < -1e-12 * np.abs(A).max()):
        raise CovsdeInputError("SPA attention matrix has negative entries: no softmax bias "
                               "realises it")
    A = np.clip(A, 0.0, None)
    D = A.sum(axis=-1)
    with np.errstate(divide="ignore"):
        B = np.log(A / D[..., None])
    return B, D
