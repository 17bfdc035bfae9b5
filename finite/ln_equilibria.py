"""Attention + LayerNorm stacks with equilibria of every rank (docs/theory.md §2.4e).

Wu et al. show that with suitable value matrices, attention followed by LayerNorm need not
collapse to the rank-one consensus set, and has equilibria of every rank 1 … m. This module
builds one such network in covsde's parametrisation (this project's construction, stated in
docs/theory.md §2.4e): an attention-only stack with LN after each layer, H heads of width
b = n/H, and fixed weights

* values ``M = W^V/√n`` block diagonal, head h's block the rank-one projector ``u_h u_hᵀ`` onto
  a unit vector u_h supported on feature block h with zero mean (so LN's centring leaves it);
* queries and keys ``W^Q = W^K = c I_n`` (head h reads feature block h), c² = β H sqrt(b), so
  that head h's logits are ``β H V_h`` (V_h the block Gram; β the sharpness).

After one layer every token is a combination ``x_a = √n Σ_h C_ah u_h``: the state is the m × H
coefficient matrix C, rank X = rank C, and each head runs its own attention on its column of C
while LN renormalises each token across heads. Fixed points are sign patterns of C with
magnitudes balanced so that, for each token, every head's attention average is the same
multiple of its coefficient; which pattern a trajectory reaches depends on X0.

:func:`equilibrium_weights` returns the three matrices; :func:`write_weights` saves them as
``.npy`` files for ``--value-init / --query-init / --key-init``; :func:`numerical_rank`
classifies V.
"""
import math
import os

import numpy as np

from sde.errors import CovsdeInputError
from sde.validation import check_positive_int


def equilibrium_weights(width, heads, beta, seed=0):
    """(W^Q, W^K, M) of the construction: (n, n) each; ``M = W^V/√n``.

    u_h: a random ±1 pattern on block h (from ``seed``), centred, unit norm.
    """
    check_positive_int("width", width)
    check_positive_int("heads", heads)
    n, H = int(width), int(heads)
    if n % H or n // H < 2:
        raise CovsdeInputError(f"width must be a multiple of heads with at least 2 features per "
                               f"head, got width = {n}, heads = {H}", "width")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise CovsdeInputError(f"beta must be a finite number > 0, got {beta!r}", "beta")
    b = n // H
    gen = np.random.default_rng(seed)
    M = np.zeros((n, n))
    for h in range(H):
        u = gen.choice([-1.0, 1.0], b)
        while np.all(u == u[0]):
            u = gen.choice([-1.0, 1.0], b)
        u -= u.mean()
        u /= np.linalg.norm(u)
        M[h * b:(h + 1) * b, h * b:(h + 1) * b] = np.outer(u, u)
    c = math.sqrt(beta * H * math.sqrt(b))
    WQ = c * np.eye(n)
    return WQ, WQ.copy(), M


def write_weights(directory, width, heads, beta, seed=0):
    """Save the construction as ``query.npy``, ``key.npy``, ``value.npy`` in ``directory``;
    returns the three paths (for ``query_init``, ``key_init``, ``value_init``)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, W in zip(("query", "key", "value"), equilibrium_weights(width, heads, beta, seed)):
        path = os.path.join(directory, f"{name}.npy")
        np.save(path, W)
        paths.append(path)
    return tuple(paths)


def numerical_rank(V, rtol=1e-9):
    """Number of eigenvalues of V (..., m, m) above ``rtol`` × the largest; NaN V gives -1."""
    V = np.asarray(V, dtype=float)
    ok = np.isfinite(V).all(axis=(-1, -2))
    ev = np.linalg.eigvalsh(np.where(ok[..., None, None], V, 0.0))
    r = (ev > rtol * ev[..., -1:]).sum(axis=-1)
    return np.where(ok, r, -1)
