"""Attention masks (docs/theory.md §2.4) and their centring matrix C (§3.5).

A mask is a 0/1 matrix M with a unit diagonal: row a (a query token) may attend to key b iff
``M_ab = 1``; ``k_a = Σ_b M_ab``. Masked shaped attention is
``A = I + softmax_M(Y/τ) − C`` with the row-normalised mask ``C_ab = M_ab / k_a``.

==================  ==========================================================
``complete``        M_ab = 1 (the default; bidirectional attention, §2.1)
``causal``          M_ab = 1 iff b ≤ a  (C is the Cesàro matrix)
``sliding``         M_ab = 1 iff |a − b| ≤ w  (``window`` w ≥ 1)
``causal-sliding``  M_ab = 1 iff a − w ≤ b ≤ a  (``window`` w ≥ 1)
``sparse``          row a allows itself and k others drawn uniformly without replacement
                    (``sparse_k`` k, 1 ≤ k < m); one graph per run, drawn from the run's seed
                    (:func:`mask_generator`: a SeedSequence child dedicated to the mask)
``explicit``        a given 0/1 matrix with a unit diagonal (Python only)
==================  ==========================================================

:meth:`Mask.matrix` realises M for m tokens (and, for ``sparse``, a seed); every error is a
one-line :class:`sde.errors.CovsdeInputError` naming the argument.
"""
from __future__ import annotations

import dataclasses
import json
import numbers

import numpy as np

from .errors import CovsdeInputError

#: mask names accepted by ``mask=`` (``explicit``: pass the matrix itself, Python only).
MASKS = ("complete", "causal", "sliding", "causal-sliding", "sparse")
WINDOWED = ("sliding", "causal-sliding")
#: spawn key of the SeedSequence child that draws a sparse mask's graph. The RNG blocks of
#: paths are the children 0, 1, … of the same root; this key is far beyond any block count.
MASK_SPAWN_KEY = 0x6D61736B  # "mask"


def mask_generator(seed):
    """The ``Generator`` of a run's mask graph: ``SeedSequence(seed)``'s child
    :data:`MASK_SPAWN_KEY` (never one of the path blocks' children)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(MASK_SPAWN_KEY,))
    return np.random.Generator(np.random.PCG64(ss))


def _is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_matrix(M, name="mask"):
    """``M`` as an (m, m) int8 0/1 array with a unit diagonal, else a one-line error."""
    try:
        A = np.asarray(M, dtype=np.float64)
    except (TypeError, ValueError):
        raise CovsdeInputError(f"{name} matrix must be a numeric (m, m) array of 0 and 1",
                               "mask") from None
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise CovsdeInputError(f"{name} matrix must be a square (m, m) array, got shape "
                               f"{A.shape}", "mask")
    bad = np.argwhere(~((A == 0.0) | (A == 1.0)))
    if len(bad):
        a, b = bad[0]
        raise CovsdeInputError(f"{name} matrix must contain only 0 and 1, got "
                               f"{A[a, b]!r} at ({a}, {b})", "mask")
    zero = np.flatnonzero(np.diag(A) == 0.0)
    if len(zero):
        a = zero[0]
        raise CovsdeInputError(f"{name} matrix must have a unit diagonal (every token attends "
                               f"to itself), got {name}[{a}, {a}] = 0", "mask")
    return A.astype(np.int8)


@dataclasses.dataclass(frozen=True)
class Mask:
    """An attention mask: ``name`` (:data:`MASKS` or ``"explicit"``), ``window`` (sliding
    masks, ≥ 1; 0 = not set), ``sparse_k`` (sparse, ≥ 1; 0 = not set), ``explicit`` (the
    matrix, a tuple of 0/1 tuples, for ``"explicit"``). Validated on construction."""

    name: str = "complete"
    window: int = 0
    sparse_k: int = 0
    explicit: tuple | None = None

    def __post_init__(self):
        name = self.name
        if name == "explicit":
            if self.explicit is None:
                raise CovsdeInputError("mask 'explicit' needs the matrix itself: pass "
                                       "mask=<0/1 array with unit diagonal> (Python only)",
                                       "mask")
            M = check_matrix(self.explicit)
            object.__setattr__(self, "explicit", tuple(tuple(int(x) for x in r) for r in M))
        elif name not in MASKS:
            raise CovsdeInputError(f"mask must be one of {', '.join(MASKS)} (or a 0/1 matrix "
                                   f"in Python), got {name!r}", "mask")
        elif self.explicit is not None:
            raise CovsdeInputError(f"a mask matrix applies only to mask 'explicit', not "
                                   f"{name!r}", "mask")
        for field, value in (("window", self.window), ("sparse_k", self.sparse_k)):
            if not _is_int(value) or value < 0:
                raise CovsdeInputError(f"{field} must be an integer >= 1, got {value!r}", field)
        if name in WINDOWED:
            if self.window < 1:
                raise CovsdeInputError(f"window must be an integer >= 1 for mask {name}, got "
                                       f"{self.window!r}", "window")
        elif self.window != 0:
            raise CovsdeInputError(f"window applies only to mask sliding or causal-sliding, "
                                   f"not {name}", "window")
        if name == "sparse":
            if self.sparse_k < 1:
                raise CovsdeInputError(f"sparse_k must be an integer >= 1 for mask sparse, "
                                       f"got {self.sparse_k!r}", "sparse_k")
        elif self.sparse_k != 0:
            raise CovsdeInputError(f"sparse_k applies only to mask sparse, not {name}",
                                   "sparse_k")
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "sparse_k", int(self.sparse_k))

    @classmethod
    def from_matrix(cls, M):
        """An explicit mask from a 0/1 array with a unit diagonal."""
        return cls("explicit", explicit=check_matrix(M))

    @property
    def is_complete(self) -> bool:
        """The complete mask by name (a realised matrix may still be all ones, see
        :func:`is_complete_matrix`)."""
        return self.name == "complete"

    @property
    def needs_seed(self) -> bool:
        return self.name == "sparse"

    def matrix(self, m, seed=None) -> np.ndarray:
        """M (m, m) int8, realised for m tokens; ``seed`` (the run's) draws a sparse graph."""
        if not _is_int(m) or m < 1:
            raise CovsdeInputError(f"m must be an integer >= 1, got {m!r}", "m")
        a = np.arange(m)[:, None]
        b = np.arange(m)[None, :]
        name = self.name
        if name == "complete":
            M = np.ones((m, m))
        elif name == "causal":
            M = b <= a
        elif name == "sliding":
            M = np.abs(a - b) <= self.window
        elif name == "causal-sliding":
            M = (b <= a) & (b >= a - self.window)
        elif name == "sparse":
            if self.sparse_k >= m:
                raise CovsdeInputError(f"sparse_k must be < m = {m} tokens (row a allows "
                                       f"itself and k others), got {self.sparse_k}", "sparse_k")
            if seed is None:
                raise CovsdeInputError("seed is required for mask sparse: its graph is drawn "
                                       "from the run's seed", "seed")
            gen = mask_generator(seed)
            M = np.eye(m, dtype=bool)
            for r in range(m):
                others = np.delete(np.arange(m), r)
                M[r, gen.choice(others, size=self.sparse_k, replace=False)] = True
        else:
            M = np.array(self.explicit)
            if M.shape[0] != m:
                raise CovsdeInputError(f"mask matrix is {M.shape[0]}x{M.shape[0]} but the "
                                       f"input has m = {m} tokens", "mask")
        return np.asarray(M, dtype=np.int8)

    def centring(self, m, seed=None) -> np.ndarray:
        """C (m, m), ``C_ab = M_ab / k_a`` (docs/theory.md §2.4)."""
        return centring_matrix(self.matrix(m, seed))

    def params(self) -> dict:
        """Name and parameters for dataset attributes (explicit: the matrix as JSON)."""
        out = {"mask": self.name, "window": self.window, "sparse_k": self.sparse_k}
        if self.name == "explicit":
            out["mask_matrix"] = matrix_json(np.array(self.explicit))
        return out

    def describe(self) -> str:
        if self.name in WINDOWED:
            return f"{self.name} (window {self.window})"
        if self.name == "sparse":
            return f"sparse (k = {self.sparse_k})"
        return self.name


COMPLETE = Mask()


def centring_matrix(M) -> np.ndarray:
    """``C_ab = M_ab / k_a``, k_a the row sums of the 0/1 matrix M (batched over leading axes)."""
    M = np.asarray(M, dtype=np.float64)
    return M / M.sum(axis=-1, keepdims=True)


def is_complete_matrix(M) -> bool:
    return bool(np.all(np.asarray(M) == 1))


def matrix_json(M) -> str:
    """A 0/1 matrix as a compact JSON string (for dataset attributes)."""
    return json.dumps(np.asarray(M).astype(int).tolist(), separators=(",", ":"))


def row_lists(M):
    """``(idx, cnt)`` for the numba kernels: row a's allowed keys are ``idx[a, :cnt[a]]``
    (increasing), so ``C_ab = 1/cnt[a]`` there."""
    M = np.asarray(M) != 0
    m = M.shape[0]
    idx = np.zeros((m, m), dtype=np.int64)
    cnt = np.zeros(m, dtype=np.int64)
    for a in range(m):
        cols = np.flatnonzero(M[a])
        idx[a, :len(cols)] = cols
        cnt[a] = len(cols)
    return idx, cnt


def model_mask(model):
    """The one mask shared by the attention sub-layers of ``model`` (None without attention).

    Sub-layers with different masks are refused: the masked kernels hold one centring C.
    """
    found = {s.mask_spec for s in model.sublayers() if hasattr(s, "mask_spec")}
    if len(found) > 1:
        raise CovsdeInputError("attention sub-layers of a composition must share one mask, "
                               f"got {', '.join(sorted(m.describe() for m in found))}", "mask")
    return found.pop() if found else None


def run_matrix(model, m, seed=None):
    """The realised mask matrix of a run (m tokens, the run's seed); None without attention."""
    mask = model_mask(model)
    return None if mask is None else mask.matrix(m, seed)


def run_attrs(model, m, seed=None) -> dict:
    """Dataset attributes of a run's mask: the realised matrix as JSON (none without attention)."""
    M = run_matrix(model, m, seed)
    return {} if M is None else {"mask_matrix": matrix_json(M)}
