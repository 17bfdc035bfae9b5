"""Scalar statistics of covariance datasets (bounded ones first: docs/theory.md §6.4).

All take the ``V`` DataArray ``(path, time, token_a, token_b)`` of the schema and keep
NaN for dead paths, so callers decide the censoring (paths alive at each time).
Statistic names used by the CLI (``--stat``): ``corr:a,b`` (ρ_ab), ``V:a,b`` (V_ab),
``mineig`` (smallest eigenvalue of V), ``effrank`` (exp of the entropy of the
normalised eigenvalues of V, between 1 and m), and the collapse measures of
docs/theory.md §2.4 (:mod:`compare.collapse`): ``tokensim`` (mean off-diagonal correlation
ρ̄, in [−1/(m−1), 1]) and ``consensus`` (μ(X)/‖X‖_F = sqrt(tr(PVP)/tr V), in [0, 1]);
``log-consensus`` (log μ(X)/‖X‖_F ≤ 0): the dataset's ``log_consensus`` variable, which finite
attention-only samplers carry without a round-off floor (docs/theory.md §2.4c); a dataset
without it (the SDE, the ODE) gets it from V, NaN where V's difference is round-off.
:func:`compute_stat` takes the dataset (or, for the statistics of V alone, its ``V``).
"""
import numpy as np
import xarray as xr

from finite.consensus import log_consensus_from_V
from sde.errors import CovsdeInputError

from .collapse import consensus_distance, token_similarity


def correlation(V, a, b):
    """ρ_ab = V_ab / sqrt(V_aa V_bb), dims (path, time)."""
    Vab = V.isel(token_a=a, token_b=b)
    Vaa = V.isel(token_a=a, token_b=a)
    Vbb = V.isel(token_a=b, token_b=b)
    return Vab / np.sqrt(Vaa * Vbb)


def entry(V, a, b):
    """V_ab, dims (path, time)."""
    return V.isel(token_a=a, token_b=b)


def _eigvals(V):
    vals = V.values
    out = np.full(vals.shape[:-1], np.nan)
    ok = np.all(np.isfinite(vals), axis=(-1, -2))
    out[ok] = np.linalg.eigvalsh(vals[ok])
    return out


def min_eigenvalue(V):
    """Smallest eigenvalue of V, dims (path, time)."""
    return xr.DataArray(_eigvals(V)[..., 0], dims=("path", "time"),
                        coords={k: V.coords[k] for k in V.coords if set(V.coords[k].dims)
                                <= {"path", "time"}})


def effective_rank(V):
    """exp(entropy of eigenvalues / their sum), dims (path, time); in [1, m]."""
    ev = np.clip(_eigvals(V), 0.0, None)
    p = ev / ev.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)
    h[~np.isfinite(ev).all(axis=-1)] = np.nan
    return xr.DataArray(np.exp(h), dims=("path", "time"),
                        coords={k: V.coords[k] for k in V.coords if set(V.coords[k].dims)
                                <= {"path", "time"}})


#: statistics of the whole matrix (no token indices)
_WHOLE = ("mineig", "effrank", "tokensim", "consensus", "log-consensus")


def _matrix_stat(V, fn):
    return xr.DataArray(fn(V.values), dims=("path", "time"),
                        coords={k: V.coords[k] for k in V.coords if set(V.coords[k].dims)
                                <= {"path", "time"}})


def parse_stat(spec, m):
    """Validate a statistic name like ``corr:0,1`` for m tokens; return (kind, a, b)."""
    if not isinstance(spec, str):
        raise CovsdeInputError(f"statistic must be a name like 'corr:0,1', got {spec!r}")
    kind, _, idx = spec.partition(":")
    if kind in _WHOLE:
        if idx:
            raise CovsdeInputError(f"statistic {spec!r}: {kind} takes no token indices")
        return kind, None, None
    if kind not in ("corr", "V"):
        raise CovsdeInputError(f"statistic {spec!r}: unknown statistic (use corr:a,b, V:a,b, "
                               f"mineig, effrank, tokensim, consensus or log-consensus)")
    try:
        a, b = (int(x) for x in idx.split(","))
    except ValueError:
        raise CovsdeInputError(f"statistic {spec!r}: expected two token indices like {kind}:0,1") \
            from None
    for x in (a, b):
        if not 0 <= x < m:
            raise CovsdeInputError(f"statistic {spec!r}: token index {x} out of range 0..{m - 1}")
    if kind == "corr" and a == b:
        raise CovsdeInputError(f"statistic {spec!r}: a correlation needs two different tokens")
    return kind, a, b


def compute_stat(V, spec):
    """The statistic named ``spec`` (see module doc), dims (path, time). ``V``: the dataset,
    or its ``V`` DataArray (then ``log-consensus`` is formed from V)."""
    ds = V if isinstance(V, xr.Dataset) else None
    if ds is not None:
        V = ds["V"]
    kind, a, b = parse_stat(spec, V.sizes["token_a"])
    if kind == "log-consensus":
        if ds is not None and "log_consensus" in ds:
            return ds["log_consensus"]
        return _matrix_stat(V, log_consensus_from_V)
    if kind == "corr":
        return correlation(V, a, b)
    if kind == "V":
        return entry(V, a, b)
    if kind == "mineig":
        return min_eigenvalue(V)
    if kind == "tokensim":
        return _matrix_stat(V, token_similarity)
    if kind == "consensus":
        return _matrix_stat(V, consensus_distance)
    return effective_rank(V)


def quantile_band(x, q=(0.1, 0.5, 0.9)):
    """Quantiles over paths alive at each time: DataArray (quantile, time)."""
    return x.quantile(list(q), dim="path", skipna=True)


def alive_fraction(x):
    """Fraction of paths with a finite value at each time, dims (time,)."""
    return xr.apply_ufunc(np.isfinite, x).mean("path")


def stat_label(spec):
    """The statistic named ``spec`` in words, for axis labels."""
    kind, _, idx = spec.partition(":")
    if kind == "corr":
        a, b = idx.split(",")
        return rf"correlation $\rho_{{{a}{b}}}$"
    if kind == "V":
        a, b = idx.split(",")
        return rf"covariance entry $V_{{{a}{b}}}$"
    if kind == "mineig":
        return r"smallest eigenvalue $\lambda_{\min}(V)$"
    if kind == "effrank":
        return "effective rank of V"
    if kind == "tokensim":
        return r"token similarity $\bar\rho$ (mean off-diagonal correlation)"
    if kind == "consensus":
        return r"distance to rank one $\mu(X)/\|X\|_F$"
    if kind == "log-consensus":
        return r"$\log\,\mu(X)/\|X\|_F$ (natural log)"
    return spec


def support(spec):
    """Known bounds of the statistic's values (for boundary-corrected densities):
    (low, high) with None where unbounded."""
    kind, _, idx = spec.partition(":")
    if kind == "corr":
        return -1.0, 1.0
    if kind == "V":
        a, b = idx.split(",")
        return (0.0, None) if a == b else (None, None)
    if kind == "mineig":
        return 0.0, None
    if kind == "tokensim":
        return None, 1.0
    if kind == "consensus":
        return 0.0, 1.0
    if kind == "log-consensus":
        return None, 0.0
    return 1.0, None
