"""Scalar statistics of covariance datasets (bounded ones first: THEORY §6.4).

All take the ``V`` DataArray ``(path, time, token_a, token_b)`` of the schema and keep
NaN for dead paths, so callers decide the censoring (paths alive at each time).
"""
import numpy as np
import xarray as xr


def correlation(V, a, b):
    """ρ_ab = V_ab / sqrt(V_aa V_bb), dims (path, time)."""
    Vab = V.isel(token_a=a, token_b=b)
    Vaa = V.isel(token_a=a, token_b=a)
    Vbb = V.isel(token_a=b, token_b=b)
    return Vab / np.sqrt(Vaa * Vbb)


def entry(V, a, b):
    """V_ab, dims (path, time)."""
    return V.isel(token_a=a, token_b=b)


def quantile_band(x, q=(0.1, 0.5, 0.9)):
    """Quantiles over paths alive at each time: DataArray (quantile, time)."""
    return x.quantile(list(q), dim="path", skipna=True)


def alive_fraction(x):
    """Fraction of paths with a finite value at each time, dims (time,)."""
    return xr.apply_ufunc(np.isfinite, x).mean("path")
