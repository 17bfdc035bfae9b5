"""The consensus distance μ(X)/‖X‖_F carried without a round-off floor (docs/theory.md §2.4c).

Write ``X = 1 x̄ᵀ + Y`` with ``Y = P X``, ``P = I − 11ᵀ/m``. Computed from V or X, μ = ‖Y‖_F
is lost to cancellation once it is ~1e-8 (from V) or ~1e-16 (from X) of ‖X‖. Here Y is a
separate state ``Y = e^ℓ Ŷ`` (``‖Ŷ‖_F = 1``, ℓ a float64 log scale), updated with the same
random draws as the sampler's X (literal) or V (reduced), and every quantity that Y' needs
is formed from Ŷ without subtracting nearly equal numbers:

* a row-stochastic attention matrix has ``P A = P A P``, so ``Y' = P A Y W/√n``;
* softmax logits ``S_ab = q_a · k_b`` split into a row constant (dropped by the softmax),
  ``c_b = q̄ · y^K_b`` (linear in Y, the same for every row) and ``ε_ab = y^Q_a · y^K_b``
  (quadratic in Y); ``A = B + D`` with ``B`` the masked softmax of c alone (its rows differ
  only through the mask; for the complete mask ``P B = 0`` exactly) and ``D`` the
  ε-correction written with ``expm1`` (:func:`split_softmax`), so ``P A = P B + e^{2ℓ} P D̂``;
* LayerNorm (per token, over features): ``P LN(X)`` from the differences
  ``r_a² − r_0²`` of the tokens' squared RMS, formed from Ŷ (:func:`layernorm_step`).

Shapes: literal X, Ŷ (p, m, n); reduced: a factor ``F = 1 f̄ᵀ + e^ℓ Ĝ`` (p, m, k) of
``V = F Fᵀ`` (:class:`ReducedState`); ℓ (p,). ``log_consensus = log ‖Y‖_F − log ‖X‖_F``.
The state ℓ is a float64: it stays finite down to about −1.8e308 (about 640 layers of the
tripling of the complete mask); μ/‖X‖ itself would underflow at log ≈ −745.
"""
from __future__ import annotations

import math

import numpy as np

#: |ε| (logit correction) above which A − B is formed directly (no cancellation left there)
DIRECT_EPS = 0.5
#: a term smaller than e^LOG_NEGLIGIBLE relative to the other is dropped (below float64's eps)
LOG_NEGLIGIBLE = -60.0
#: from V, μ² is tr V − 1ᵀV1/m: below this multiple of machine eps × tr V it is round-off
FROM_V_FLOOR = 64.0


def centre_rows(M, axis=-2):
    """``P M`` along ``axis`` (tokens) without cancellation between identical rows: the first
    row is subtracted before the mean, so rows equal in floating point give exactly 0."""
    M = np.moveaxis(M, axis, -1)
    D = M - M[..., :1]
    D = D - D.mean(axis=-1, keepdims=True)
    return np.moveaxis(D, -1, axis)


def _exprel(x):
    """``expm1(x)/x`` (1 at 0)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.expm1(x) / x
    return np.where(x == 0.0, 1.0, r)


def split_softmax(chat, ehat, ell, mask=None):
    """The centred parts of ``A = softmax_M(c_b + ε_ab)`` with ``c = e^ℓ ĉ``, ``ε = e^{2ℓ} ε̂``.

    chat (p, H, m); ehat (p, H, m, m); ell (p,); mask (m, m) 0/1 or None (complete).
    Returns ``(PB, PDhat, A)`` with ``P A = PB + e^{2ℓ} PDhat`` (P along tokens a) and A the
    full matrix (float64, for the rank-one part). For the complete mask PB is exactly 0.
    """
    s = np.exp(ell)[:, None, None, None]
    sig = np.exp(2.0 * ell)[:, None, None, None]
    m = chat.shape[-1]
    c = np.broadcast_to((s[..., 0] * chat)[..., None, :], ehat.shape)
    allowed = np.ones((m, m), dtype=bool) if mask is None else np.asarray(mask) != 0
    cm = np.where(allowed, c, -np.inf)
    w = np.exp(cm - cm.max(axis=-1, keepdims=True))     # per-row max over allowed keys
    Z0 = w.sum(axis=-1, keepdims=True)
    B = w / Z0
    eps = sig * ehat
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # big: redone below
        e1 = ehat * _exprel(eps)                         # expm1(ε)/e^{2ℓ}
        S1 = (w * e1).sum(axis=-1, keepdims=True)
        Z = Z0 + sig * S1
        Dhat = w * (e1 * Z0 - S1) / (Z * Z0)
    big = np.abs(np.where(allowed, eps, 0.0)).max(axis=(1, 2, 3)) > DIRECT_EPS
    if big.any():                                        # O(1) corrections: form A directly
        u = np.where(allowed, c + eps, -np.inf)[big]
        wb = np.exp(u - u.max(axis=-1, keepdims=True))
        Ab = wb / wb.sum(axis=-1, keepdims=True)
        Dhat[big] = (Ab - B[big]) / sig[big]
    return centre_rows(B), centre_rows(Dhat), B + sig * Dhat


def combine(U, Vc, ell, log_factor=0.0):
    """``(Ŷ', ℓ')`` with ``e^{ℓ'} Ŷ' = e^{ℓ + log_factor} (U + e^{2ℓ} Vc)``, ``‖Ŷ'‖_F = 1``.

    U, Vc (p, ...); ell (p,). Computed in logs: no underflow however small e^{2ℓ}; a term
    below e^:data:`LOG_NEGLIGIBLE` of the other is dropped. A path with both zero gets −inf.
    """
    ax = tuple(range(1, U.ndim))
    nu = np.sqrt((U * U).sum(axis=ax))
    nv = np.sqrt((Vc * Vc).sum(axis=ax))
    ex = (slice(None),) + (None,) * (U.ndim - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lu, lv = np.log(nu), 2.0 * ell + np.log(nv)
        top = np.maximum(lu, lv)
        fu = np.where(lu - top > LOG_NEGLIGIBLE, np.exp(lu - top), 0.0)
        fv = np.where(lv - top > LOG_NEGLIGIBLE, np.exp(lv - top), 0.0)
        T = (np.where(nu > 0, fu / nu, 0.0)[ex] * U + np.where(nv > 0, fv / nv, 0.0)[ex] * Vc)
        T = centre_rows(T, axis=1)
        nt = np.sqrt((T * T).sum(axis=ax))
        ell_new = ell + log_factor + top + np.log(nt)
        Yhat = T / nt[ex]
    dead = ~(nt > 0) | ~np.isfinite(top)
    if dead.any():
        Yhat[dead] = 0.0
        ell_new[dead] = -np.inf
    return Yhat, ell_new


def start(Y):
    """(Ŷ, ℓ) of a centred part Y (p, m, k) given directly (the first layer's input)."""
    Y = centre_rows(Y, axis=1)
    nrm = np.sqrt((Y * Y).sum(axis=(1, 2)))
    with np.errstate(divide="ignore"):
        return Y / np.where(nrm > 0, nrm, 1.0)[:, None, None], np.log(nrm)


def log_norm(X):
    """log ‖X‖_F over all but the first axis."""
    return 0.5 * np.log((X * X).sum(axis=tuple(range(1, X.ndim))))


def log_consensus_from_V(V):
    """log μ(X)/‖X‖_F from V (…, m, m): ``½ log((tr V − 1ᵀV1/m)/tr V)``, NaN where the
    difference is within :data:`FROM_V_FLOOR` × m × eps × tr V of round-off (censored, not
    clipped)."""
    V = np.asarray(V, dtype=float)
    m = V.shape[-1]
    tr = np.einsum("...ii", V)
    num = tr - V.sum(axis=(-1, -2)) / m
    ok = num > FROM_V_FLOOR * m * np.finfo(float).eps * np.abs(tr)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, 0.5 * np.log(num / tr), np.nan)


# ---------------------------------------------------------------- sub-layer steps

def _heads(M, H):
    p, m, n = M.shape
    return M.reshape(p, m, H, n // H).transpose(0, 2, 1, 3)


def _concat_heads(M):
    p, H, m, k = M.shape
    return M.transpose(0, 2, 1, 3).reshape(p, m, H * k)


def attention_split(layer, ehat, chat, ell, index):
    """``(Z, E, A, row_sums_off)`` of a bound standard-attention layer: ``P A = Z + e^{2ℓ} E``
    per head, A the full matrix, and whether A's rows may not sum to one (E-SPA/U-SPA: then
    ``P A 1 ≠ 0`` and the rank-one part feeds Y). ``index``: paths' layer (E-SPA)."""
    s = layer.spec
    if layer.spa:
        A = np.broadcast_to(layer.spa_A[index], ehat.shape)
        return centre_rows(A), np.zeros(ehat.shape), A, True
    m = ehat.shape[-1]
    PB, PD, A = split_softmax(chat, ehat, ell, layer.mask_matrix(m))
    if s.attention == "value-skipinit":
        Pm = np.eye(m) - 1.0 / m
        return (s.skip_alpha * Pm + s.skip_beta * PB, s.skip_beta * PD,
                s.skip_alpha * np.eye(m) + s.skip_beta * A, False)
    return PB, PD, A, False


def softmax_literal_step(layer, X, Yhat, ell, weights, index):
    """Ŷ, ℓ through a standard attention layer (:class:`finite.unshaped.layers.
    FiniteSoftmaxAttention`) with the literal weights it is applied with. X (p, m, n) is the
    layer's input (its mean row x̄ is the rank-one part). Similarity removal multiplies by
    ``I − θ11ᵀ/m``, which P absorbs: it does not change Y'."""
    p, m, n = X.shape
    H, nk = layer.heads, layer.key_width
    WV = weights[-1]
    if layer.spa:
        chat = np.zeros((p, H, m))
        ehat = np.zeros((p, H, m, m))
    else:
        WQ, WK, _ = weights
        scale = n * math.sqrt(nk)
        qbar = (X.mean(axis=1)[:, None, :] @ WQ).reshape(p, H, 1, nk)
        YQ = _heads(Yhat @ WQ, H)
        YK = _heads(Yhat @ WK, H)
        chat = (qbar @ np.swapaxes(YK, -1, -2))[:, :, 0] / scale
        ehat = YQ @ np.swapaxes(YK, -1, -2) / scale
    Z, E, A, off = attention_split(layer, ehat, chat, ell, index)
    YV = _heads(Yhat @ WV, H)
    U = _concat_heads(Z @ YV)
    Vc = _concat_heads(E @ YV)
    if off:                                     # P A 1 x̄ᵀ W: the rank-one part's share
        xV = _heads(np.broadcast_to(X.mean(axis=1, keepdims=True), X.shape) @ WV, H)
        with np.errstate(over="ignore"):
            U = U + np.exp(-ell)[:, None, None] * _concat_heads(Z @ xV)
    return combine(U, Vc, ell, -0.5 * math.log(n))


def shaped_literal_step(layer, X, Yhat, ell, weights, index):
    """Ŷ, ℓ through a shaped attention sub-block ``λX + γ concat_h(A_h X W_h)/√n``: its A
    (rows summing to one) keeps ‖PA‖ of order one, so P A is formed directly from X's A."""
    from .shaping import residual_lambda, shaped_attention_matrix

    s = layer.spec
    p, m, n = X.shape
    H, nk = layer.heads, layer.key_width
    WQ, WK, WV = weights
    Q = _heads(X @ WQ, H)
    K = _heads(X @ WK, H)
    A = shaped_attention_matrix(Q @ np.swapaxes(K, -1, -2) / n, s.tau0, n, nk,
                                layer.mask_matrix(m))
    U = residual_lambda(s.gamma) * Yhat + (s.gamma / math.sqrt(n)) * _concat_heads(
        centre_rows(A) @ _heads(Yhat @ WV, H))
    return combine(U, np.zeros_like(U), ell)


def layernorm_step(X, Yhat, ell):
    """Ŷ, ℓ through LayerNorm (each token centred over its n features, divided by its RMS
    r_a): ``P LN(X) = e^ℓ [δ̂ x̃ᵀ + P diag(1/r) Ỹ]`` with x̃ = C x̄, Ỹ = Ŷ C (C centres the
    features) and ``e^ℓ δ̂_a`` the centred ``1/r_a``, from ``r_a² − r_0² = e^ℓ [2 x̃·(ỹ_a −
    ỹ_0) + e^ℓ (ỹ_a − ỹ_0)·(ỹ_a + ỹ_0)]/n`` (docs/theory.md §2.4c)."""
    p, m, n = X.shape
    xt = X.mean(axis=1)
    xt = xt - xt.mean(axis=-1, keepdims=True)
    Yt = Yhat - Yhat.mean(axis=-1, keepdims=True)
    Xc = X - X.mean(axis=-1, keepdims=True)
    r = np.sqrt((Xc * Xc).mean(axis=-1))
    s = np.exp(ell)[:, None]
    d = Yt - Yt[:, :1]
    dr2 = (2.0 * np.einsum("pmn,pn->pm", d, xt)
           + s * np.einsum("pmn,pmn->pm", d, Yt + Yt[:, :1])) / n
    dinv = -dr2 / (r * r[:, :1] * (r + r[:, :1]))
    delta = dinv - dinv.mean(axis=1, keepdims=True)
    U = delta[:, :, None] * xt[:, None, :] + centre_rows(Yt / r[:, :, None], axis=1)
    return combine(U, np.zeros_like(U), ell)


# ---------------------------------------------------------------- reduced sampler

def cholesky_frame(fbar, Ghat, ell):
    """Q (p, k, m) with orthonormal columns such that ``F Q`` is the Cholesky factor of
    ``F Fᵀ`` for ``F = 1 f̄ᵀ + e^ℓ Ĝ`` (fbar (p, k), Ghat (p, m, k)): q_1 ∝ f_1, and q_j spans
    the part of ``f_j − f_1 = e^ℓ (ĝ_j − ĝ_1)`` orthogonal to q_1 … q_{j−1}: one Householder QR
    of ``[f_1/|f_1|, ĝ_2 − ĝ_1, …]`` (no cancellation; Q is orthonormal to round-off even where
    the centred part's own singular values are far apart and its last directions are
    ill-determined)."""
    s = np.exp(ell)[:, None]
    f1 = fbar + s * Ghat[:, 0]
    q1 = f1 / np.linalg.norm(f1, axis=-1, keepdims=True)
    D = np.swapaxes(Ghat[:, 1:] - Ghat[:, :1], -1, -2)                   # (p, k, m−1)
    Q, R = np.linalg.qr(np.concatenate([q1[:, :, None], D], axis=-1))
    sign = np.sign(np.diagonal(R, axis1=-2, axis2=-1))
    return Q * np.where(sign == 0, 1.0, sign)[:, None, :]


def psd_root(W):
    """T with ``T Tᵀ = W`` for PSD W (…, m, m): Cholesky, else eigh (rank-deficient Wishart
    draws with fewer degrees of freedom than m)."""
    try:
        return np.linalg.cholesky(W)
    except np.linalg.LinAlgError:
        lam, U = np.linalg.eigh(W)
        return U * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]


class ReducedState:
    """The reduced sampler's state in split form, per head block: ``F_h = 1 f̄_hᵀ + e^ℓ Ĝ_h``
    with ``V_h = F_h F_hᵀ`` (the sampler's head-block Grams) and ``V = Σ_h V_h``.

    ``fbar`` (p, H, k), ``Ghat`` (p, H, m, k) centred over tokens, ‖Ĝ‖_F = 1 over all blocks,
    ``ell`` (p,). The factor of V is the blocks side by side (p, m, H k)."""

    def __init__(self, L, heads=1):
        F = np.broadcast_to(L[:, None] / math.sqrt(heads), (L.shape[0], heads) + L.shape[1:])
        self.fbar = F.mean(axis=2)
        G, self.ell = start(_concat_heads(F - self.fbar[:, :, None, :]))
        self.Ghat = _heads(G, heads)

    def _full(self):
        return (self.fbar.reshape(self.fbar.shape[0], -1), _concat_heads(self.Ghat))

    def log_consensus(self):
        """log ‖P F‖_F / ‖F‖_F (p,)."""
        fbar, _ = self._full()
        m = self.Ghat.shape[2]
        tr = m * (fbar * fbar).sum(axis=-1) + np.exp(2.0 * self.ell)
        with np.errstate(divide="ignore"):
            return self.ell - 0.5 * np.log(tr)

    def _frame(self):
        """(lbar (p, m), Gq (p, m, m), L (p, m, m)): the Cholesky factor L of V, its mean row
        and its centred part divided by e^ℓ."""
        fbar, G = self._full()
        Q = cholesky_frame(fbar, G, self.ell)
        lbar = np.einsum("pk,pkm->pm", fbar, Q)
        Gq = G @ Q
        return lbar, Gq, lbar[:, None, :] + np.exp(self.ell)[:, None, None] * Gq

    def softmax_step(self, layer, QK, W, index):
        """Through a reduced standard attention layer with its draws ``G_Q G_Kᵀ`` (p, H, m, m)
        and ``W`` (p, H, m, m) (``V'_h = A_h L W_h Lᵀ A_hᵀ / n``, L the Cholesky factor)."""
        p, H, m, _ = self.Ghat.shape
        n, nk = layer.width, layer.key_width
        lbar, Gq, L = self._frame()
        Gq = Gq[:, None]
        if layer.spa:
            chat = np.zeros((p, H, m))
            ehat = np.zeros((p, H, m, m))
        else:
            chat = (lbar[:, None, None, :] @ QK @ np.swapaxes(Gq, -1, -2))[:, :, 0]
            chat = chat / math.sqrt(nk)
            ehat = Gq @ QK @ np.swapaxes(Gq, -1, -2) / math.sqrt(nk)
        Z, E, A, off = attention_split(layer, ehat, chat, self.ell, index)
        T = psd_root(W)                                                  # W = T Tᵀ
        abar = A.mean(axis=-2, keepdims=True)                           # (p, H, 1, m)
        self.fbar = (abar @ L[:, None] @ T)[:, :, 0] / math.sqrt(n)
        GT = Gq @ T
        U, Vc = Z @ GT, E @ GT
        if off:
            with np.errstate(over="ignore"):
                U = U + np.exp(-self.ell)[:, None, None, None] * (
                    Z @ (lbar[:, None, None, :] @ T).repeat(m, axis=2))
        G, self.ell = combine(_concat_heads(U), _concat_heads(Vc), self.ell,
                              -0.5 * math.log(n))
        self.Ghat = _heads(G, H)

    def shaped_step(self, layer, QK, M, W):
        """Through a reduced shaped attention sub-block with its draws (``G_Q G_Kᵀ``, M, W),
        each (p, H, m, m): per block ``F'_h = [λ L_h + c A_h L M_h | c A_h L T_h]``,
        ``c = γ/√n``, ``T_h T_hᵀ = W_h``, L_h the Cholesky factor of V_h (docs/theory.md
        §2.4c); A's rows sum to one and ‖P A‖ is of order one, so P A is formed directly."""
        from .shaping import residual_lambda, shaped_attention_matrix

        s = layer.spec
        p, H, m, k = self.Ghat.shape
        n, nk = layer.width, layer.key_width
        lam, c = residual_lambda(s.gamma), s.gamma / math.sqrt(n)
        lbar, Gq, L = self._frame()
        Qh = cholesky_frame(self.fbar.reshape(p * H, k), self.Ghat.reshape(p * H, m, k),
                            np.repeat(self.ell, H)).reshape(p, H, k, m)
        lbar_h = np.einsum("phk,phkm->phm", self.fbar, Qh)
        Gq_h = self.Ghat @ Qh
        Lx = L[:, None]
        A = shaped_attention_matrix(Lx @ QK @ np.swapaxes(Lx, -1, -2), s.tau0, n, nk,
                                    layer.mask_matrix(m))
        PA = centre_rows(A)
        T = psd_root(W)
        abarL = A.mean(axis=-2, keepdims=True) @ Lx                       # (p, H, 1, m)
        self.fbar = np.concatenate([lam * lbar_h + c * (abarL @ M)[:, :, 0],
                                    c * (abarL @ T)[:, :, 0]], axis=-1)
        PAG = PA @ Gq[:, None]
        U = np.concatenate([lam * Gq_h + c * (PAG @ M), c * (PAG @ T)], axis=-1)
        G, self.ell = combine(_concat_heads(U), np.zeros((p, m, H * 2 * m)), self.ell)
        self.Ghat = _heads(G, H)


# ---------------------------------------------------------------- which layers carry it

def literal_step_of(bound):
    """The literal step function of a bound finite layer, or None if it has none."""
    from sde.models import ShapedAttention

    from .unshaped import LayerNorm, SoftmaxAttention
    spec = bound.spec
    if isinstance(spec, SoftmaxAttention):
        return softmax_literal_step
    if isinstance(spec, ShapedAttention):
        return shaped_literal_step
    if isinstance(spec, LayerNorm):
        return lambda layer, X, Yhat, ell, weights, index: layernorm_step(X, Yhat, ell)
    return None


def carried(bound_layers, sampler):
    """Whether the consensus distance is carried for these bound layers and sampler: every
    sub-layer must have a step (literal: standard or shaped attention, LayerNorm; reduced:
    standard or shaped attention), and the attention weights must be Gaussian."""
    from sde.models import ShapedAttention

    from .unshaped import SoftmaxAttention
    if any(isinstance(b.spec, SoftmaxAttention) and b.spec.value_init != "gaussian"
           for b in bound_layers) or any(getattr(b, "fixed", None) for b in bound_layers):
        return False        # non-Gaussian weights (docs/theory.md §2.4c): from V
    if sampler == "literal":
        return all(literal_step_of(b) is not None for b in bound_layers)
    return all(isinstance(b.spec, (SoftmaxAttention, ShapedAttention)) for b in bound_layers)


def reduced_step(state, bound, record, index):
    """Advance a :class:`ReducedState` through one reduced sub-layer, from the draws it
    recorded (``record``)."""
    if "M" in record:
        state.shaped_step(bound, record["QK"], record["M"], record["W"])
    else:
        state.softmax_step(bound, record["QK"], record["W"], index)
