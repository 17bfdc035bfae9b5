"""covsde.sde — covariance SDEs of shaped Transformers at initialisation (docs/theory.md §3–4).

``V = X Xᵀ / n`` is the (m, m) token covariance; SDE time ``t = layer / n``.
"""
from ._numba_cache import lock_cache_writes
from ._version import __version__
from .errors import CovsdeInputError
from .initial import equicorrelated, load_V0, validate_V0
from .models import (MODELS, ShapedAttention, ShapedBlock, ShapedMLP, ShapedMLPResidual,
                     model_from_params)
from .simulate import simulate

__all__ = [
    "__version__", "CovsdeInputError", "equicorrelated", "load_V0", "validate_V0", "MODELS",
    "ShapedAttention", "ShapedBlock", "ShapedMLP", "ShapedMLPResidual", "model_from_params",
    "simulate",
]

lock_cache_writes()  # before any kernel is compiled: see sde/_numba_cache.py
