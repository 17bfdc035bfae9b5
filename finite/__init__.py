"""covsde.finite — literal and exact reduced samplers of finite-width shaped networks.

:func:`sample` draws covariance paths ``V = X Xᵀ / n`` of a finite network (docs/theory.md §2, §5)
and returns the dataset of :mod:`sde.schema`, ``time = layer / width``.
"""
# importing unshaped registers the unshaped architectures and their finite maps
from . import unshaped
from .sample import SAMPLERS, sample

__all__ = ["SAMPLERS", "sample", "unshaped"]
