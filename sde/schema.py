"""The dataset schema shared by ``sde``, ``finite`` and ``compare`` (defined once here).

Variables
    ``V(path, time, token_a, token_b)`` float64 — the covariance ``X Xᵀ/n``; NaN at every
    saved time from the step at which a path died onwards.
    ``status(path)`` int8 — 0 alive, 1 left the PD cone, 2 blew up (non-finite or
    ``|V_ab|`` above the bound), 3 factorisation failed in a finite sampler.
    ``exploded(path)`` bool — ``status != 0``.
    ``death_time(path)`` float64 — time of death, ``inf`` for paths that survived.
Coords
    ``time`` (float, ``t = step · dt``; for finite networks ``t = layer / width``),
    ``step`` (int, along ``time``), optionally ``depth`` (int, finite samples).
Attrs
    ``schema_version``, ``source``, ``arch``, every model parameter, ``seed``, ``dt``,
    ``method``, ``covsde_version``, dead counts and the binomial 95 % interval of the
    dead fraction, plus run settings. Wall time and timestamps are the only attrs that
    may differ between identical runs (:data:`VOLATILE_ATTRS`).
"""
import json

import numpy as np
import scipy.stats
import xarray as xr

from ._version import __version__
from .errors import CovsdeInputError

SCHEMA_VERSION = 1
STATUS_MEANINGS = {0: "alive", 1: "left the PD cone", 2: "blew up", 3: "factorisation failed"}
#: attrs excluded when two datasets are compared for identity.
VOLATILE_ATTRS = ("wall_time_s", "created", "threads")


def dead_fraction_ci(n_dead, n_total, level=0.95):
    """Clopper–Pearson interval of a dead fraction: (fraction, low, high)."""
    if n_total == 0:
        return float("nan"), 0.0, 1.0
    ci = scipy.stats.binomtest(int(n_dead), int(n_total)).proportion_ci(level, method="exact")
    return n_dead / n_total, float(ci.low), float(ci.high)


def netcdf_safe(attrs):
    """Convert attrs to what netCDF can hold: bools → 0/1, None dropped, dicts/lists → JSON."""
    out = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value)
        elif isinstance(value, np.integer):
            value = int(value)
        elif isinstance(value, np.floating):
            value = float(value)
        out[key] = value
    return out


def make_dataset(V, status, death_time, steps, dt, attrs, depth=None):
    """Assemble a dataset in the schema.

    V: (path, time, m, m); status: (path,) int; death_time: (path,); steps: (time,) ints;
    dt: time per step; attrs: dict (made netCDF-safe; dead counts are added here).
    """
    status = np.asarray(status, dtype=np.int8)
    steps = np.asarray(steps, dtype=np.int64)
    n_paths = status.shape[0]
    coords = {
        "path": np.arange(n_paths),
        "time": ("time", steps * dt),
        "step": ("time", steps),
    }
    if depth is not None:
        coords["depth"] = ("time", np.asarray(depth, dtype=np.int64))
    ds = xr.Dataset(
        {
            "V": (("path", "time", "token_a", "token_b"), np.asarray(V, dtype=np.float64)),
            "status": ("path", status),
            "exploded": ("path", status != 0),
            "death_time": ("path", np.asarray(death_time, dtype=np.float64)),
        },
        coords=coords,
    )
    ds["V"].attrs["long_name"] = "token covariance V = X X^T / n"
    ds["status"].attrs["flag_meanings"] = json.dumps(STATUS_MEANINGS)
    ds["time"].attrs["long_name"] = "t = layer / n (depth-to-width ratio)"
    n_dead = int(np.count_nonzero(status))
    frac, lo, hi = dead_fraction_ci(n_dead, n_paths)
    full = {
        "schema_version": SCHEMA_VERSION,
        "covsde_version": __version__,
        **attrs,
        "n_paths": n_paths,
        "n_dead": n_dead,
        "n_left_cone": int(np.count_nonzero(status == 1)),
        "n_blew_up": int(np.count_nonzero(status == 2)),
        "n_factor_failed": int(np.count_nonzero(status == 3)),
        "dead_fraction": frac,
        "dead_fraction_ci95_low": lo,
        "dead_fraction_ci95_high": hi,
        "dead_paths_policy": "a dead path is kept, NaN from its death on; statistics use "
                             "the paths alive at each time",
    }
    ds.attrs = netcdf_safe(full)
    return ds


def validate_dataset(ds, name="dataset"):
    """Raise :class:`CovsdeInputError` unless ``ds`` follows the schema."""
    for var in ("V", "status", "death_time"):
        if var not in ds:
            raise CovsdeInputError(f"{name} is not a covsde dataset: no variable {var!r}")
    if ds["V"].dims != ("path", "time", "token_a", "token_b"):
        raise CovsdeInputError(f"{name} is not a covsde dataset: V has dims {ds['V'].dims}")
    for key in ("schema_version", "source", "arch"):
        if key not in ds.attrs:
            raise CovsdeInputError(f"{name} is not a covsde dataset: no attribute {key!r}")
    if int(ds.attrs["schema_version"]) > SCHEMA_VERSION:
        raise CovsdeInputError(
            f"{name} has schema_version {ds.attrs['schema_version']}, newer than this "
            f"covsde understands ({SCHEMA_VERSION})")
    return ds


def summary_line(ds):
    """One line: source, paths, dead count and fraction with its 95 % interval."""
    a = ds.attrs
    return (f"{a['source']} arch={a['arch']}: {a['n_paths']} paths, "
            f"{a['n_dead']} dead ({100 * a['dead_fraction']:.2f} %, 95 % CI "
            f"{100 * a['dead_fraction_ci95_low']:.2f}–{100 * a['dead_fraction_ci95_high']:.2f} %; "
            f"{a['n_left_cone']} left the PD cone, {a['n_blew_up']} blew up)")
