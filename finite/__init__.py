"""covsde.finite — literal and exact reduced samplers of finite-width shaped networks.

:func:`sample` draws covariance paths ``V = X Xᵀ / n`` of a finite network (docs/theory.md §2, §5)
and returns the dataset of :mod:`sde.schema`, ``time = layer / width``. The unshaped
Transformers of the rank-collapse papers are in :mod:`finite.unshaped`. Public names are
imported on first use (:mod:`sde.lazy`).
"""
from sde.lazy import lazy_package

__all__ = ["SAMPLERS", "sample", "unshaped"]

lazy_package(__name__, {"SAMPLERS": "sample", "sample": "sample"})
