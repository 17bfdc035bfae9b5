"""covsde.sde — covariance SDEs of shaped Transformers at initialisation (docs/theory.md §3–4).

``V = X Xᵀ / n`` is the (m, m) token covariance; SDE time ``t = layer / n``.

The public names are imported on first use (:mod:`sde.lazy`; ``from sde import simulate``
works as usual), so that ``import sde.models`` does not import numba, scipy or xarray.
"""
from ._numba_cache import lock_cache_writes
from ._version import __version__
from .errors import CovsdeInputError
from .lazy import lazy_package

__all__ = [
    "__version__", "CovsdeInputError", "equicorrelated", "load_V0", "validate_V0", "MODELS",
    "ShapedAttention", "ShapedBlock", "ShapedMLP", "ShapedMLPResidual", "model_from_params",
    "simulate",
]

lazy_package(__name__, {
    "equicorrelated": "initial", "load_V0": "initial", "validate_V0": "initial",
    "MODELS": "models", "ShapedAttention": "models", "ShapedBlock": "models",
    "ShapedMLP": "models", "ShapedMLPResidual": "models", "model_from_params": "models",
    "simulate": "simulate"})

lock_cache_writes()  # before any kernel is compiled: see sde/_numba_cache.py
