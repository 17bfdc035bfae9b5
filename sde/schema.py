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
    dead fraction (not for a one-path deterministic run), plus run settings. Wall time and
    timestamps are the only attrs that may differ between identical runs
    (:data:`VOLATILE_ATTRS`). On disk V is packed and compressed (:mod:`sde.io`).
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
    """Clopper–Pearson interval of a dead fraction: (fraction, low, high).

    The closed form by beta quantiles, ``low = B⁻¹(α/2; k, n − k + 1)``,
    ``high = B⁻¹(1 − α/2; k + 1, n − k)`` (0 and 1 at k = 0 and k = n): the interval
    ``scipy.stats.binomtest(k, n).proportion_ci(method="exact")`` finds by root search
    (to ~1e-11), in ~0.1 ms instead of ~5 ms — it is computed for every run.
    """
    if n_total == 0:
        return float("nan"), 0.0, 1.0
    k, n = int(n_dead), int(n_total)
    alpha = 1.0 - level
    low = float(scipy.stats.beta.ppf(alpha / 2, k, n - k + 1)) if k > 0 else 0.0
    high = float(scipy.stats.beta.ppf(1 - alpha / 2, k + 1, n - k)) if k < n else 1.0
    return k / n, low, high


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
    ci = {"dead_fraction_ci95_low": lo, "dead_fraction_ci95_high": hi} if n_paths > 1 else {}
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
        **ci,  # a deterministic one-path run (ODE) gets no binomial interval
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
    """One line: source, paths, dead count and fraction with its 95 % interval (a one-path,
    deterministic run says whether its path survived, with no interval)."""
    a = ds.attrs
    if int(a["n_paths"]) == 1:
        st = int(np.asarray(ds["status"].values).ravel()[0]) if "status" in ds else 0
        fate = "survived" if st == 0 else f"died ({STATUS_MEANINGS.get(st, st)})"
        return (f"{a['source']} arch={a['arch']}: 1 deterministic path (no sampling), "
                f"{fate}")
    return (f"{a['source']} arch={a['arch']}: {a['n_paths']} paths, "
            f"{a['n_dead']} dead ({100 * a['dead_fraction']:.2f} %, 95 % CI "
            f"{100 * a['dead_fraction_ci95_low']:.2f}–{100 * a['dead_fraction_ci95_high']:.2f} %; "
            f"{a['n_left_cone']} left the PD cone, {a['n_blew_up']} blew up)")


#: relative slack of the symmetry and Cauchy–Schwarz checks (round-off of X Xᵀ / n).
_DATA_RTOL = 1e-8


def validate_data(ds, name="dataset"):
    """Raise :class:`CovsdeInputError` (one line) if the data of a schema-valid dataset is
    inconsistent — what a corrupted file looks like:

    * ``status`` outside 0–3, ``exploded`` ≠ ``status != 0``, ``death_time`` finite for an
      alive path or infinite for a dead one;
    * V not finite on an alive path, or a dead path finite at the last saved time, or a path
      finite again after a NaN time (dead paths stay dead);
    * V not symmetric; a diagonal entry ≤ 0 or |V_ab| > sqrt(V_aa V_bb) (V is a covariance);
    * for SDE files, |V_ab| above the stored ``bound`` on a path counted alive.
    """
    V = np.asarray(ds["V"].values)
    status = np.asarray(ds["status"].values)
    death = np.asarray(ds["death_time"].values, dtype=float)
    n_paths = V.shape[0]
    bad = f"{name}: corrupted data:"
    if status.shape != (n_paths,) or death.shape != (n_paths,):
        raise CovsdeInputError(f"{bad} status/death_time do not have one entry per path")
    if not np.all(np.isin(status, list(STATUS_MEANINGS))):
        raise CovsdeInputError(f"{bad} status values outside {sorted(STATUS_MEANINGS)}")
    dead = status != 0
    if "exploded" in ds and not np.array_equal(np.asarray(ds["exploded"].values, bool), dead):
        raise CovsdeInputError(f"{bad} 'exploded' disagrees with 'status'")
    if np.any(np.isfinite(death) & ~dead) or np.any(~np.isfinite(death) & dead):
        raise CovsdeInputError(f"{bad} death_time disagrees with status")
    if V.shape[-1] != V.shape[-2]:
        raise CovsdeInputError(f"{bad} V is not square over its token dimensions")
    diag_idx = np.arange(V.shape[-1])
    for i in range(V.shape[1]):  # one saved time at a time (memory)
        Vi = V[:, i]
        fin = np.isfinite(Vi)
        all_fin = fin.all(axis=(-1, -2))
        if np.any(fin.any(axis=(-1, -2)) & ~all_fin):
            raise CovsdeInputError(f"{bad} V partly non-finite on a path at t = "
                                   f"{float(ds['time'].values[i]):g}")
        if np.any(~all_fin & ~dead):
            p = int(np.nonzero(~all_fin & ~dead)[0][0])
            raise CovsdeInputError(f"{bad} path {p} is alive (status 0) but V is not finite "
                                   f"at t = {float(ds['time'].values[i]):g}")
        W = Vi[all_fin]
        if W.size == 0:
            continue
        scale = np.abs(W).max(axis=(-1, -2), keepdims=True) + 1e-300
        if np.any(np.abs(W - np.swapaxes(W, -1, -2)) > _DATA_RTOL * scale):
            raise CovsdeInputError(f"{bad} V is not symmetric at t = "
                                   f"{float(ds['time'].values[i]):g}")
        d = W[:, diag_idx, diag_idx]
        if np.any(d <= 0):
            raise CovsdeInputError(f"{bad} a diagonal entry of V is <= 0 at t = "
                                   f"{float(ds['time'].values[i]):g}")
        if np.any(W ** 2 > d[:, :, None] * d[:, None, :] * (1 + _DATA_RTOL) + 1e-300):
            raise CovsdeInputError(f"{bad} |V_ab| > sqrt(V_aa V_bb) at t = "
                                   f"{float(ds['time'].values[i]):g} (not a covariance)")
        if str(ds.attrs.get("source", "")).startswith("sde") and "bound" in ds.attrs:
            if np.any(np.abs(W) > float(ds.attrs["bound"])):
                raise CovsdeInputError(f"{bad} |V_ab| above the bound "
                                       f"{float(ds.attrs['bound']):g} on a path counted alive")
    last = np.isfinite(V[:, -1]).all(axis=(-1, -2))
    if np.any(last & dead):
        raise CovsdeInputError(f"{bad} a dead path (status != 0) is finite at the last time")
    return ds
