"""High-precision (mpmath) reference networks for the carried consensus distance.

The same random draws as :func:`finite.sample` (literal weights, or the reduced sampler's
``G_Q G_Kᵀ`` and Wishart draws, from the same RNG blocks in the same order), but every
product, softmax and Cholesky factor in ``mp.dps`` decimal digits, and μ(X)/‖X‖_F formed
from X (literal) or V (reduced) directly: at that precision the cancellation is harmless.
"""
import math

import mpmath as mp
import numpy as np

from finite import literal as lit
from finite import reduced as red
from sde.runs import block_generators


def _mp(a):
    return np.vectorize(mp.mpf, otypes=[object])(np.asarray(a, dtype=float))


def _softmax_rows(S, M):
    out = np.empty(S.shape, dtype=object)
    m = S.shape[-1]
    for a in range(m):
        idx = [b for b in range(m) if M is None or M[a, b]]
        top = max(S[a, b] for b in idx)
        e = {b: mp.exp(S[a, b] - top) for b in idx}
        z = mp.fsum(e.values())
        for b in range(m):
            out[a, b] = e[b] / z if b in e else mp.mpf(0)
    return out


def _log_consensus_X(X):
    Y = X - X.mean(axis=0)[None, :]
    return float(mp.log(mp.sqrt(mp.fsum(Y.ravel() ** 2)) / mp.sqrt(mp.fsum(X.ravel() ** 2))))


def _log_consensus_V(V):
    m = V.shape[0]
    tr = mp.fsum(V[i, i] for i in range(m))
    num = tr - mp.fsum(V.ravel()) / m
    return float(mp.log(num / tr) / 2)


def literal(V0, width, depth, n_paths, seed, mask=None, dps=120):
    """log μ/‖X‖_F (n_paths, depth + 1) of an attention-only stack (one head, n_k = n)."""
    mp.mp.dps = dps
    n = width
    shapes = lit.attention_shapes(n, 1, n)
    out = np.empty((n_paths, depth + 1))
    row = 0
    for gen, p in _blocks(seed, n_paths):
        X0 = lit.initial_X(V0, n)
        Xs = [_mp(X0) for _ in range(p)]
        for i in range(p):
            out[row + i, 0] = _log_consensus_X(Xs[i])
        for layer in range(depth):
            WQ, WK, WV = lit.draw_weights(gen, p, shapes)
            for i in range(p):
                X = Xs[i]
                S = (X @ _mp(WQ[i])) @ (X @ _mp(WK[i])).T / (n * mp.sqrt(n))
                X = _softmax_rows(S, mask) @ X @ _mp(WV[i]) / mp.sqrt(n)
                Xs[i] = X
                out[row + i, layer + 1] = _log_consensus_X(X)
        row += p
    return out


def reduced(V0, width, depth, n_paths, seed, mask=None, dps=120):
    """The same for the reduced sampler's recurrence ``V' = A L W Lᵀ Aᵀ / n``, L = chol V,
    ``A = softmax_M(L G_Q G_Kᵀ Lᵀ / √n_k)``, with its draws."""
    mp.mp.dps = dps
    m, n = V0.shape[0], width
    out = np.empty((n_paths, depth + 1))
    row = 0
    for gen, p in _blocks(seed, n_paths):
        Vs = [_mp(V0) for _ in range(p)]
        out[row:row + p, 0] = _log_consensus_V(Vs[0])
        for layer in range(depth):
            QK = red.query_key_product(gen, (p, 1), m, n)
            W = red.wishart(gen, (p, 1), m, n)
            for i in range(p):
                L = np.array(mp.cholesky(mp.matrix(Vs[i].tolist())).tolist(), dtype=object)
                A = _softmax_rows(L @ _mp(QK[i, 0]) @ L.T / mp.sqrt(n), mask)
                AL = A @ L
                Vs[i] = AL @ _mp(W[i, 0]) @ AL.T / n
                out[row + i, layer + 1] = _log_consensus_V(Vs[i])
        row += p
    return out


def _blocks(seed, n_paths):
    gens = block_generators(seed, n_paths)
    sizes = [min(256, n_paths - k * 256) for k in range(len(gens))]
    return list(zip(gens, sizes))


def digits_needed(log_mu):
    """Decimal digits for a relative precision 1e-20 of μ where log μ/‖X‖ is ``log_mu``."""
    return int(20 + 2 * abs(log_mu) / math.log(10))


def literal_ln(V0, width, depth, n_paths, seed, dps=120):
    """As :func:`literal` with LayerNorm after each attention layer (attention-only
    ``layernorm=True``): each token centred over its n features, divided by its RMS."""
    mp.mp.dps = dps
    n = width
    shapes = lit.attention_shapes(n, 1, n)
    out = np.empty((n_paths, depth + 1))
    row = 0
    for gen, p in _blocks(seed, n_paths):
        Xs = [_mp(lit.initial_X(V0, n)) for _ in range(p)]
        out[row:row + p, 0] = _log_consensus_X(Xs[0])
        for layer in range(depth):
            WQ, WK, WV = lit.draw_weights(gen, p, shapes)
            for i in range(p):
                X = Xs[i]
                S = (X @ _mp(WQ[i])) @ (X @ _mp(WK[i])).T / (n * mp.sqrt(n))
                X = _softmax_rows(S, None) @ X @ _mp(WV[i]) / mp.sqrt(n)
                Xc = X - X.mean(axis=1)[:, None]
                r = np.array([mp.sqrt(mp.fsum(row_ ** 2) / n) for row_ in Xc], dtype=object)
                Xs[i] = Xc / r[:, None]
                out[row + i, layer + 1] = _log_consensus_X(Xs[i])
        row += p
    return out
