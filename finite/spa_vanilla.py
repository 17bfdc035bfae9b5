"""He et al.'s vanilla blocks as a whole: the E-SPA/U-SPA schedule kept by attention + MLP
together (docs/theory.md §2.4g).

A vanilla block is ``X ← attn(X)``, then ``X ← mlp(X)`` (no skips, no LN). Width first, the MLP
with the He-scaled leaky ReLU of slope s maps a kernel with unit diagonal entrywise,
``K_ab ↦ κ_s(K_ab)`` (:func:`leaky_relu_kernel`), and attention with a deterministic A maps
``K ↦ A K Aᵀ``, so one block is ``K_ℓ = F_s(A_ℓ K_{ℓ−1} A_ℓᵀ)``. To stay on the target schedule
Σ_ℓ (:func:`finite.spa.kernel_schedule`), attention aims at the pre-image

    Σ̃_ℓ = F_s^{-1}(Σ_ℓ)   (entrywise κ_s^{-1} off the diagonal),   A_ℓ = chol(Σ̃_ℓ) chol(Σ_{ℓ−1})^{-1}

so that ``F_s(A_ℓ Σ_{ℓ−1} A_ℓᵀ) = F_s(Σ̃_ℓ) = Σ_ℓ``. This needs Σ̃_ℓ positive definite and
A_ℓ ≥ 0 entrywise (a softmax bias realises it), i.e. the MLP may raise correlations by no more
than the schedule does in each layer; a plain ReLU (κ_0(0) = 1/π) breaks that at the first
layer. The shaped slope (:func:`shaped_slope`) is the smallest s (the most nonlinear MLP) for
which the stack's width-first kernel stays within :data:`SCHEDULE_TOL` of Σ_ℓ at every depth:
where the pre-image would need negative attention weights (E-SPA's far lags; U-SPA's first
layer at the smallest slopes), they are set to 0, and the tolerance bounds the effect. The
realised deviation is recorded (``schedule_error`` in the attrs), also for an explicit slope.

E-SPA's default end value (:func:`default_final`) makes the target at depth L have mean
off-diagonal correlation :data:`TARGET_SIMILARITY` for the run's m, as U-SPA's default ρ_L does.
"""
import functools
import math

import numpy as np

from sde.errors import CovsdeInputError

from . import spa

#: mean off-diagonal correlation of the E-SPA target Σ_L by default (= U-SPA's default ρ_L)
TARGET_SIMILARITY = 0.8
#: U-SPA's default ρ_L
USPA_DEFAULT = 0.8


def leaky_relu_kernel(rho, s):
    """κ_s(ρ): correlation after the He-scaled leaky ReLU φ_s(x) = max(x,0) + s min(x,0) of two
    unit-variance Gaussians with correlation ρ (the normalised dual activation)."""
    rho = np.clip(np.asarray(rho, dtype=float), -1.0, 1.0)
    relu = (np.sqrt(1.0 - rho * rho) + (math.pi - np.arccos(rho)) * rho) / math.pi
    return (2.0 * s * rho + (1.0 - s) ** 2 * relu) / (1.0 + s * s)


def inverse_kernel(r, s, iters=80):
    """κ_s^{-1}(r) by bisection on [−1, 1] (κ_s is increasing); r must lie in κ_s([−1, 1])."""
    r = np.asarray(r, dtype=float)
    lo, hi = np.full(r.shape, -1.0), np.full(r.shape, 1.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        up = leaky_relu_kernel(mid, s) < r
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return 0.5 * (lo + hi)


def default_final(kind, m):
    """The default end value: ρ_L = 0.8 for U-SPA; for E-SPA the γ_L whose Σ_L has mean
    off-diagonal correlation :data:`TARGET_SIMILARITY` at m tokens."""
    if kind == "u-spa":
        return USPA_DEFAULT
    if kind != "e-spa":
        raise CovsdeInputError(f"no SPA default for attention {kind!r}")
    lags = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))[np.triu_indices(m, 1)]

    def mean_corr(g):
        return np.exp(-g * lags).mean()

    lo, hi = 1e-12, 50.0
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if mean_corr(mid) > TARGET_SIMILARITY else (lo, mid)
    return math.sqrt(lo * hi)


def mlp_map(K, slope):
    """The MLP's width-first map of a kernel K (..., m, m): ``sqrt(K_aa K_bb) κ_s(ρ_ab)``."""
    d = np.sqrt(np.einsum("...ii->...i", K))
    D = d[..., :, None] * d[..., None, :]
    return D * leaky_relu_kernel(K / D, slope)


def kernel_targets(kind, final, m, depth, slope):
    """Σ̃_1 … Σ̃_L (L, m, m): the kernels attention aims at so that the MLP lands on Σ_ℓ."""
    S = spa.kernel_schedule(kind, final, m, depth)[1:]
    vals, where = np.unique(S, return_inverse=True)      # E-SPA: one value per lag and layer
    T = inverse_kernel(vals, slope)[where].reshape(S.shape)
    idx = np.arange(m)
    T[:, idx, idx] = 1.0
    return T


def attention_matrices(kind, final, m, depth, slope):
    """A_1 … A_L (L, m, m) of a vanilla stack whose MLP has slope ``slope``:
    ``A_ℓ = chol(Σ̃_ℓ) chol(Σ_{ℓ−1})^{-1}`` with negative entries set to 0 (a softmax bias
    cannot realise them; U-SPA has none, E-SPA small ones that :func:`shaped_slope` bounds
    through the resulting map). Refused if a Σ̃_ℓ is not positive definite."""
    S = spa.kernel_schedule(kind, final, m, depth)
    T = kernel_targets(kind, final, m, depth, slope)
    try:
        Lt = np.linalg.cholesky(T)
    except np.linalg.LinAlgError:
        raise CovsdeInputError(f"mlp_slope = {slope:g} is too far from 1 for the {kind} "
                               f"schedule at depth {depth}, m = {m}: the MLP raises "
                               f"correlations faster than the schedule (use the shaped "
                               f"default)", "mlp_slope") from None
    Ls = np.linalg.cholesky(S[:-1])
    A = np.stack([np.linalg.solve(Ls[k].T, Lt[k].T).T for k in range(depth)])
    return np.clip(A, 0.0, None)


def kernel_map(kind, final, m, depth, slope):
    """K_0 … K_L (L + 1, m, m) of the vanilla stack, width first, from K_0 = I:
    ``K_ℓ = F_s(A_ℓ K_{ℓ−1} A_ℓᵀ)`` with the realised A_ℓ of :func:`attention_matrices`."""
    K = [np.eye(m)]
    for a in attention_matrices(kind, final, m, depth, slope):
        K.append(mlp_map(a @ K[-1] @ a.T, slope))
    return np.stack(K)


def schedule_error(kind, final, m, depth, slope):
    """max over ℓ and entries of |K_ℓ − Σ_ℓ| (inf where the targets are not realisable)."""
    try:
        K = kernel_map(kind, final, m, depth, slope)
    except CovsdeInputError:
        return math.inf
    return float(np.abs(K - spa.kernel_schedule(kind, final, m, depth)).max())


#: the vanilla stack's width-first kernel stays within this of the schedule (shaped slope)
SCHEDULE_TOL = 0.01


@functools.lru_cache(maxsize=64)
def shaped_slope(kind, final, m, depth, tol=SCHEDULE_TOL):
    """The smallest slope s in [0, 1) (the most nonlinear MLP) whose vanilla stack stays on the
    schedule: max |K_ℓ − Σ_ℓ| ≤ ``tol`` at every depth (bisection; s → 1 makes the MLP linear
    and the map exact)."""
    if schedule_error(kind, final, m, depth, 0.0) <= tol:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if schedule_error(kind, final, m, depth, mid) > tol else (lo, mid)
    return hi
