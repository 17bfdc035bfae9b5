"""Non-Gaussian weights of standard attention and the initial frame of finite networks
(docs/theory.md §2.4e, §2.4f).

Weight initialisations of :class:`finite.unshaped.SoftmaxAttention` (parameters
``value_init``, ``query_init``, ``key_init``):

* ``"gaussian"`` — iid N(0, 1) entries, fresh per layer (the default);
* ``"orthogonal"`` (values only) — ``W^V/√n`` a Haar-random orthogonal n × n matrix, fresh per
  layer and path (the Q factor of a Gaussian matrix, signs fixed by R's diagonal);
* ``"identity"`` (values only) — ``W^V/√n = I``, so head h outputs ``A_h X_h`` (X_h the
  columns of head h's block) and with one head ``attn(X) = A X``;
* a path to a ``.npy`` file — a fixed matrix, the same in every layer and path: for values the
  n × n matrix ``M = W^V/√n`` (head h applies its column block ``M_h``), for queries and keys
  the n × (H n_k) matrix ``W^Q`` or ``W^K`` itself (logits ``(X W^Q)(X W^K)ᵀ/(n √n_k)``).

Initial X (``initial_x`` of :func:`finite.sample`), ``X0 = √n L E`` with ``L Lᵀ = V0`` and E of
orthonormal rows, each head block ``E_h`` with ``E_h E_hᵀ = I/H``:

* ``"aligned"`` — ``E_h = H^{-1/2} [I 0]`` in every block (:func:`finite.literal.spread_matrix`);
* ``"haar"`` — ``E_h = H^{-1/2} O_hᵀ``, O_h (n/H × m) Haar-distributed orthonormal columns,
  fresh per path and block.

Gaussian (and Haar orthogonal) weights make the law of a network's V depend on X0 only through
V0 (block-diagonal rotations of the features leave it unchanged); LayerNorm and fixed weight
matrices do not, and for them the two frames give different laws.
"""
import hashlib
import math
import os

import numpy as np

from sde.errors import CovsdeInputError

VALUE_INITS = ("gaussian", "orthogonal", "identity")
QK_INITS = ("gaussian",)
INITIAL_X = ("haar", "aligned")


def is_file_init(init):
    """Whether an init string names a .npy file (a fixed matrix)."""
    return init not in VALUE_INITS


def check_init(name, init, allowed):
    """Validate an init parameter: one of ``allowed`` or an existing ``.npy`` path."""
    if not isinstance(init, str):
        raise CovsdeInputError(f"{name} must be one of {', '.join(allowed)} or a path to a .npy "
                               f"file, got {init!r}", name)
    if init in allowed:
        return
    if init in VALUE_INITS or not init.endswith(".npy"):
        raise CovsdeInputError(f"{name} must be one of {', '.join(allowed)} or a path to a .npy "
                               f"file, got {init!r}", name)
    if not os.path.isfile(init):
        raise CovsdeInputError(f"{name}: no such file {init!r}", name)


def load_matrix(name, path, shape):
    """The float64 matrix of a ``.npy`` init file, checked to be finite of shape ``shape``."""
    try:
        M = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CovsdeInputError(f"{name}: cannot read {path!r} as a .npy array ({exc})",
                               name) from None
    if M.shape != tuple(shape) or not np.issubdtype(M.dtype, np.number):
        raise CovsdeInputError(f"{name}: {path!r} must hold a real {shape[0]} x {shape[1]} "
                               f"matrix at this width, got shape {M.shape}", name)
    M = np.ascontiguousarray(M, dtype=np.float64)
    if not np.isfinite(M).all():
        raise CovsdeInputError(f"{name}: {path!r} has non-finite entries", name)
    return M


def file_digest(path):
    """sha256 (first 16 hex digits) of a file's bytes, for provenance."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def haar_orthogonal(G):
    """Haar-random orthogonal matrices from Gaussian ones: G (..., n, k) → Q (..., n, k) with
    orthonormal columns, ``Q = G R^{-1}`` with R's diagonal made positive (Mezzadri's fix)."""
    Q, R = np.linalg.qr(G)
    d = np.sign(np.einsum("...ii->...i", R))
    d[d == 0] = 1.0
    return Q * d[..., None, :]


def haar_frames(gen, p, m, width, heads):
    """E (p, m, n): per path, each head block ``H^{-1/2} O_hᵀ`` with O_h (n/H × m) Haar
    orthonormal columns; draws ``p · H`` Gaussian (n/H × m) matrices from ``gen`` in order."""
    bs = width // heads
    G = gen.standard_normal((p, heads, bs, m))
    O = haar_orthogonal(G)                                   # (p, H, bs, m)
    return np.swapaxes(O, -1, -2).transpose(0, 2, 1, 3).reshape(p, m, width) / math.sqrt(heads)
