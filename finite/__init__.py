"""covsde.finite — literal and exact reduced samplers of finite-width shaped networks.

:func:`sample` draws covariance paths ``V = X Xᵀ / n`` of a finite network (THEORY §2, §5)
and returns the dataset of :mod:`sde.schema`, ``time = layer / width``.
"""
from .sample import SAMPLERS, sample

__all__ = ["SAMPLERS", "sample"]
