"""Sweeps on Dask: grids of SDE / finite-network cells that survive ``kill -9`` and resume.

``run_sweep(config, STORE)`` computes every cell of a config (:mod:`compare.sweep_config`) on
a ``dask.distributed`` cluster — a :class:`~distributed.LocalCluster` of processes sized to the
machine, or an existing scheduler by address — and ``open_sweep(STORE)`` returns the results
as one ``xarray.Dataset`` indexed by the grid axes.

A cell (one point of the grid) runs, on a worker (models, SDE and finite networks as in
``docs/theory.md``): the SDE (Euler–Maruyama) from V0 to ``t = ratio``, optionally the ODE,
and optionally the finite network at ``width`` to depth ``ratio · width``; then the distances
finite-vs-SDE at ``t = ratio`` for every statistic (through :func:`compare_to_sde`, the one
call into :mod:`compare.distances`), the quantiles of each source, alive counts and dead
fractions (censoring: statistics over the paths alive at ``t``); with ``[sources.blowup]``,
the SDE's own ``P(τ ≤ T = ratio)`` converged in dt (:func:`run_blowup`, which is
:func:`sde.blowup.blowup_probability` with the cell's seed). The worker returns all of
it; only the client (the ``covsde sweep`` process) writes to STORE, so a worker never
touches the disk and a killed client leaves no writer.

STORE layout::

    STORE/manifest.json          config (normalised), its sha256, covsde version, and per
                                 finished cell: key, seeds, file, sha256 of the file
    STORE/cells/<id>.nc          one compressed netCDF per cell: root group = the cell's
                                 summary (dims stat, source, quantile, boot); groups "sde",
                                 "finite", "ode" = the raw datasets (schema of sde.schema),
                                 "blowup" = the dt sequence of the blow-up estimate
    STORE/shared/<source>_<hash>.nc  a sample shared by several cells (sources.<name>.share),
                                 stored once, recorded in the manifest's "shared" with sha256
    STORE/.lock                  held (flock) while a sweep runs on STORE

Writes are atomic: a cell is written to ``<id>.nc.tmp``, fsynced, hashed, renamed
(``os.replace``), then recorded in the manifest (itself written by tmp + rename). On resume a
cell is finished when its file's sha256 matches the manifest; a file renamed into place but
not yet recorded (killed in between) is checked (it opens, its key and config hash match) and
adopted; a mismatching checksum (corrupt file) or a leftover ``.tmp`` (partial write) means
the cell is recomputed. A finished cell is never rewritten. Seeds depend only on the root
seed and the cell's parameter values (:func:`compare.sweep_config.cell_seeds`), so a resumed
sweep equals an uninterrupted one, whatever the worker count or scheduling.

Test hook (tests only): the environment variable ``COVSDE_SWEEP_TEST_KILL`` = ``after:N``
makes the client SIGKILL itself after the N-th cell is recorded, ``write:N`` after the N-th
cell's temporary file is written and before it is renamed.
"""
import datetime
import fcntl
import hashlib
import json
import os
import signal
import time
import warnings

import numpy as np
import xarray as xr

from sde import __version__
from sde.errors import CovsdeInputError

from .sweep_config import axis_values, canonical_json, cells, config_hash

STORE_FORMAT = "covsde-sweep"
STORE_VERSION = 1
MANIFEST = "manifest.json"
CELL_DIR = "cells"
LOCK = ".lock"
KILL_ENV = "COVSDE_SWEEP_TEST_KILL"
#: netCDF compression of the raw per-path variables.
COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}
#: sources whose raw dataset has paths (the usual schema).
SOURCE_ORDER = ("sde", "ode", "finite")
#: groups of a cell file: the path sources, then the blow-up sequence (one row per dt).
RAW_GROUPS = SOURCE_ORDER + ("blowup",)
#: shared samples (``sources.<name>.share``) kept by run_cell for the next cells that use them.
_SHARED_CACHE = {}
_SHARED_CACHE_SIZE = 3
SHARED_DIR = "shared"


def _cached(name, make):
    if name not in _SHARED_CACHE:
        while len(_SHARED_CACHE) >= _SHARED_CACHE_SIZE:
            _SHARED_CACHE.pop(next(iter(_SHARED_CACHE)))
        _SHARED_CACHE[name] = make()
    return _SHARED_CACHE[name]


class SweepError(RuntimeError):
    """A cell failed on a worker, or the cluster could not be reached."""


# ---------------------------------------------------------------- the distances adapter
def compare_to_sde(finite_ds, sde_ds, stats, t, n_boot, seed, ode_ds=None):
    """Distances finite-vs-SDE at time ``t``: the sweep's only call into compare.distances.

    Returns a ``pandas.DataFrame`` with one row per statistic (column ``stat``) and numeric
    columns (KS, W1, intervals, floors, …): every numeric column except the quantiles (stored
    per source by the sweep) becomes a variable of dims ``(stat,)`` in the sweep dataset.
    """
    from .distances import distances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead fractions are stored beside every distance
        return distances(finite_ds, sde_ds, stats=list(stats), times=[t], n_boot=n_boot,
                         seed=seed, point=ode_ds)


# ---------------------------------------------------------------- one cell (on a worker)
def run_cell(spec, threads=1):
    """Compute one cell (a spec from :func:`compare.sweep_config.cells`).

    ``threads``: numba / sampler threads for this task (an int, or a dict worker address →
    int as computed by the client); never changes the result. Returns ``(summary,
    datasets)``: the summary Dataset (see :func:`summarise`) and a dict source → raw Dataset
    (``V(path, time, token_a, token_b)`` etc., saved at t = 0 and t = ratio unless the
    source's ``save_every`` says otherwise).
    """
    import numba

    from finite import sample
    from sde.initial import equicorrelated
    from sde.models import model_from_params
    from sde.simulate import simulate

    if isinstance(threads, dict):
        try:
            from distributed import get_worker

            threads = threads.get(get_worker().address, 1)
        except ValueError:  # not on a worker
            threads = 1
    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    model = model_from_params(spec["params"])
    V0 = equicorrelated(spec["initial"]["tokens"], spec["initial"]["rho0"])
    t, src, seeds = spec["ratio"], spec["sources"], spec["seeds"]
    out = {}
    shared = spec.get("shared", {})
    if "sde" in src:
        s = src["sde"]
        if "sde" in shared:  # one sample for every cell along the shared axes
            sh = shared["sde"]
            out["sde"] = _cached(sh["file"], lambda: simulate(
                model, V0, t_end=sh["t_end"], dt=s["dt"], n_paths=s["paths"], seed=sh["seed"],
                save_every=sh["save_every"], progress=False))
        else:
            n_steps = int(round(t / s["dt"]))
            out["sde"] = simulate(model, V0, t_end=t, dt=s["dt"], n_paths=s["paths"],
                                  seed=seeds["sde"], save_every=s.get("save_every", n_steps),
                                  progress=False)
    if "ode" in src:
        o = src["ode"]
        n_ode = int(round(t / o["dt"]))
        out["ode"] = simulate(model, V0, t_end=t, dt=o["dt"], seed=seeds["ode"], method="ode",
                              save_every=o.get("save_every", n_ode), progress=False)
    if "finite" in src:
        f = src["finite"]

        def make_finite(depth, seed, every):
            return sample(model, V0, width=spec["width"], n_paths=f["paths"], seed=seed,
                          depth=depth, sampler=f["sampler"], key_width=f.get("key_width"),
                          save_every=every, threads=threads, progress=False)

        if "finite" in shared:
            sh = shared["finite"]
            out["finite"] = _cached(sh["file"], lambda: make_finite(sh["depth"], sh["seed"],
                                                                    sh["save_every"]))
        else:
            depth = int(round(t * spec["width"]))
            out["finite"] = make_finite(depth, seeds["finite"], f.get("save_every", depth))
    if "blowup" in src:
        out["blowup"] = blowup_dataset(run_blowup(spec, model, V0))
    return summarise(spec, out), out


def run_blowup(spec, model=None, V0=None):
    """The ``sources.blowup`` estimate of one cell: :func:`sde.blowup.blowup_probability`
    with T = the cell's ratio and the cell's ``blowup`` seed (a :class:`BlowupResult`)."""
    from sde.blowup import blowup_probability
    from sde.initial import equicorrelated
    from sde.models import model_from_params

    b = spec["sources"]["blowup"]
    model = model if model is not None else model_from_params(spec["params"])
    V0 = V0 if V0 is not None else equicorrelated(spec["initial"]["tokens"],
                                                  spec["initial"]["rho0"])
    return blowup_probability(model, V0, t_end=spec["ratio"], dt0=b["dt0"],
                              n_paths=b["paths"], seed=spec["seeds"]["blowup"],
                              method=b["method"], max_halvings=b["max_halvings"],
                              rtol=b["rtol"], atol=b["atol"], progress=False)


def blowup_dataset(res):
    """A :class:`sde.blowup.BlowupResult` as a Dataset: its sequence (dim ``level``, one
    row per step size) and, in attrs, the converged value, its interval, dt and flag."""
    cols = ("dt", "n_steps", "seed", "n_paths", "n_dead", "n_blew_up", "n_left_cone",
            "probability", "ci_low", "ci_high", "wall_time_s")
    ds = xr.Dataset({c: ("level", np.array([r[c] for r in res.sequence])) for c in cols},
                    coords={"level": np.arange(len(res.sequence))})
    # the paired change P(previous dt) - P(this dt) from the coupled runs (NaN at level 0)
    nan = float("nan")
    for name, get in (("difference", lambda r: r["difference"]),
                      ("difference_ci_low", lambda r: r["difference_ci"][0]),
                      ("difference_ci_high", lambda r: r["difference_ci"][1]),
                      ("tolerance", lambda r: r["tolerance"])):
        ds[name] = ("level", np.array([get(r) if "difference" in r else nan
                                       for r in res.sequence]))
    attrs = {k: v for k, v in res.attrs.items() if k not in ("V0",)}
    attrs = {k: (json.dumps(v) if isinstance(v, (list, dict)) else
                 int(v) if isinstance(v, bool) else v) for k, v in attrs.items()
             if v is not None}
    ds.attrs = {**attrs, "source": "sde-blowup", "probability": res.probability,
                "ci_low": res.ci_low, "ci_high": res.ci_high, "dt": res.dt,
                "converged": int(res.converged), "status": res.status}
    return ds


def _time_index(ds, t):
    tt = ds["time"].values
    i = int(np.argmin(np.abs(tt - t)))
    if abs(tt[i] - t) > 1e-9 * max(abs(t), 1.0):
        raise CovsdeInputError(f"time {t} not saved in the {ds.attrs.get('source')} dataset")
    return i


def summarise(spec, datasets):
    """The summary of one cell at ``t = ratio``, an ``xarray.Dataset`` with dims
    ``stat`` (S), ``source`` (K: sde, ode, finite present), ``quantile`` (Q):

    - ``quantile_value (source, stat, quantile)``: quantiles over the paths alive at t;
    - ``n_paths``, ``n_alive``, ``dead_fraction``, ``dead_fraction_ci95_low/high (source)``
      (Clopper–Pearson; NaN for the one-path ODE);
    - with a finite source, every numeric column of :func:`compare_to_sde` (finite = a,
      SDE = b) as a variable ``(stat,)``: ``ks``, ``ks_pvalue``, ``w1``, intervals, floors, …
    """
    from sde.schema import dead_fraction_ci

    from .statistics import compute_stat

    t = spec["ratio"]
    stats = spec["stats"]
    qs = np.asarray(spec["compare"]["quantiles"], dtype=float)
    sources = [s for s in SOURCE_ORDER if s in datasets]
    if not sources:  # a blow-up-only cell
        summary = xr.Dataset()
        summary.attrs = {"compared_time": t}
        _blowup_summary(summary, datasets["blowup"])
        return summary
    qv = np.full((len(sources), len(stats), len(qs)), np.nan)
    n_paths = np.zeros(len(sources), dtype=np.int64)
    n_alive = np.zeros(len(sources), dtype=np.int64)
    ci = np.full((len(sources), 2), np.nan)
    for k, name in enumerate(sources):
        ds = datasets[name]
        it = _time_index(ds, t)
        V = ds["V"].values[:, it]
        alive = np.all(np.isfinite(V), axis=(1, 2))
        n_paths[k], n_alive[k] = V.shape[0], int(alive.sum())
        if V.shape[0] > 1:
            ci[k] = dead_fraction_ci(n_paths[k] - n_alive[k], n_paths[k])[1:]
        for j, stat in enumerate(stats):
            x = compute_stat(ds["V"], stat).values[:, it]
            x = x[np.isfinite(x)]
            if x.size:
                qv[k, j] = np.quantile(x, qs)
    summary = xr.Dataset(
        {"quantile_value": (("source", "stat", "quantile"), qv),
         "n_paths": ("source", n_paths), "n_alive": ("source", n_alive),
         "dead_fraction": ("source", 1.0 - n_alive / n_paths),
         "dead_fraction_ci95_low": ("source", ci[:, 0]),
         "dead_fraction_ci95_high": ("source", ci[:, 1])},
        coords={"source": sources, "stat": list(stats), "quantile": qs})
    summary["quantile_value"].attrs["long_name"] = "quantiles of each statistic at t = ratio " \
                                                   "over the paths alive there"
    summary["dead_fraction"].attrs["long_name"] = "fraction of paths dead by t = ratio"
    attrs = {"compared_time": t}
    if "finite" in datasets:
        df = compare_to_sde(datasets["finite"], datasets["sde"], stats, t,
                            spec["compare"]["n_boot"], spec["seeds"]["boot"],
                            datasets.get("ode"))
        df = df.set_index("stat").reindex(stats)
        for col in df.columns:
            if col == "time" or (col.startswith("q") and col[-2:] in ("_a", "_b")):
                continue
            vals = df[col].to_numpy()
            if vals.dtype == bool or vals.dtype == object:
                try:
                    vals = vals.astype(float)
                except (TypeError, ValueError):
                    continue
            summary[col] = ("stat", vals)
        attrs.update(distance_a=datasets["finite"].attrs["source"],
                     distance_b=datasets["sde"].attrs["source"],
                     distance_point="sde-ode" if "ode" in datasets else "",
                     censoring=df.attrs.get("censoring", ""), n_boot=spec["compare"]["n_boot"],
                     boot_seed=spec["seeds"]["boot"])
        if spec["compare"].get("boot_replicates"):
            ks_b, w1_b = boot_replicates(datasets["finite"], datasets["sde"], stats, t,
                                         spec["compare"]["n_boot"], spec["seeds"])
            summary["ks_boot"] = (("stat", "boot"), ks_b)
            summary["w1_boot"] = (("stat", "boot"), w1_b)
            for v in ("ks_boot", "w1_boot"):
                summary[v].attrs["long_name"] = (
                    "bootstrap replicates of the distance (paths of both sides resampled; the "
                    "SDE resample j drawn from seed [sde_boot, j], shared by the cells that "
                    "share the SDE sample): for the standard error of a convergence slope, not "
                    "an interval of the (upward-biased) distance itself")
    if "blowup" in datasets:
        _blowup_summary(summary, datasets["blowup"])
    summary.attrs = {**attrs, **summary.attrs}
    return summary


def boot_replicates(finite_ds, sde_ds, stats, t, n_boot, seeds):
    """(S, B) arrays of KS and W1 between bootstrap resamples of the finite and SDE samples of
    each statistic at ``t`` (:func:`compare.distances.bootstrap_distances`; finite resamples
    from seed ``[boot, 1]``, SDE resample j from ``[sde_boot, j]``)."""
    from .distances import bootstrap_distances, censoring_bound, usable_paths
    from .statistics import compute_stat

    bound = censoring_bound(finite_ds, sde_ds)
    ia, ib = _time_index(finite_ds, t), _time_index(sde_ds, t)
    ua, ub = usable_paths(finite_ds, bound)[:, ia], usable_paths(sde_ds, bound)[:, ib]
    rng = np.random.default_rng([seeds["boot"], 1])
    ks, w1 = np.full((len(stats), n_boot), np.nan), np.full((len(stats), n_boot), np.nan)
    for j, stat in enumerate(stats):
        x = compute_stat(finite_ds["V"], stat).values[:, ia]
        y = compute_stat(sde_ds["V"], stat).values[:, ib]
        x, y = x[ua & np.isfinite(x)], y[ub & np.isfinite(y)]
        if x.size and y.size:
            ks[j], w1[j] = bootstrap_distances(x, y, n_boot, rng, shared_seed=seeds["sde_boot"])
    return ks, w1


def _blowup_summary(summary, b):
    """The converged blow-up probability of a cell (attrs of its blow-up dataset)."""
    a = b.attrs
    summary["blowup_probability"] = ((), float(a["probability"]))
    summary["blowup_ci95_low"] = ((), float(a["ci_low"]))
    summary["blowup_ci95_high"] = ((), float(a["ci_high"]))
    summary["blowup_dt"] = ((), float(a["dt"]))
    summary["blowup_converged"] = ((), np.int8(a["converged"]))
    summary["blowup_n_levels"] = ((), np.int64(b.sizes["level"]))
    prev = b["probability"].values[-2] if b.sizes["level"] > 1 else np.nan
    summary["blowup_previous_probability"] = ((), float(prev))
    summary["blowup_previous_probability"].attrs["long_name"] = (
        "the estimate at twice the final step (2 * blowup_dt): how much the last halving moved it")
    summary["blowup_n_paths"] = ((), np.int64(a["n_paths"]))
    last = {k: (float(b[k].values[-1]) if k in b else np.nan)
            for k in ("difference", "difference_ci_low", "difference_ci_high", "tolerance")}
    summary["blowup_difference"] = ((), last["difference"])
    summary["blowup_difference_ci95_low"] = ((), last["difference_ci_low"])
    summary["blowup_difference_ci95_high"] = ((), last["difference_ci_high"])
    summary["blowup_tolerance"] = ((), last["tolerance"])
    summary["blowup_difference"].attrs["long_name"] = (
        "P(2 blowup_dt) - P(blowup_dt) from coupled runs (one Brownian path), with its paired "
        "95 % interval blowup_difference_ci95_low/high")
    summary["blowup_probability"].attrs["long_name"] = (
        "P(tau <= T), T = ratio: the dead fraction at the step blowup_dt where the paired "
        "interval of P(2 dt) - P(dt) lies inside +-blowup_tolerance "
        "(sde.blowup.blowup_probability); the finest step's value if not converged")
    summary["blowup_converged"].attrs["long_name"] = (
        "1 = converged in dt, 0 = not converged (more paths needed, or still moving with dt)")


# ---------------------------------------------------------------- the store
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_json(obj, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def read_manifest(store):
    """The manifest of a sweep STORE (dict), or raise :class:`CovsdeInputError`."""
    path = os.path.join(store, MANIFEST)
    if not os.path.isfile(path):
        raise CovsdeInputError(f"{store}: not a covsde sweep store (no {MANIFEST})")
    try:
        with open(path) as fh:
            man = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CovsdeInputError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(man, dict) or man.get("format") != STORE_FORMAT:
        raise CovsdeInputError(f"{path}: not a covsde sweep manifest")
    return man


def cell_relpath(spec):
    return os.path.join(CELL_DIR, spec["id"] + ".nc")


def _kill_hook(stage, count):
    spec = os.environ.get(KILL_ENV, "")
    if spec == f"{stage}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)


def _cell_attrs(spec, chash):
    return {"sweep_format": STORE_FORMAT, "sweep_format_version": STORE_VERSION,
            "covsde_version": __version__, "cell_id": spec["id"],
            "cell_key": canonical_json(spec["key"]), "cell_axes": canonical_json(spec["axes"]),
            "cell_seeds": canonical_json(spec["seeds"]), "config_hash": chash,
            "stats": canonical_json(spec["stats"]),
            "sources": canonical_json(spec["sources"]),
            "compare": canonical_json(spec["compare"]),
            "shared": canonical_json(spec.get("shared", {}))}


def write_cell(store, spec, summary, datasets, chash, count=0):
    """Write one cell file atomically (tmp, fsync, sha256, rename); return its sha256."""
    path = os.path.join(store, cell_relpath(spec))
    tmp = path + ".tmp"
    summary = summary.copy()
    summary.attrs = {**summary.attrs, **_cell_attrs(spec, chash)}
    try:
        summary.to_netcdf(tmp, mode="w", engine="h5netcdf")
        for name in RAW_GROUPS:
            if name in datasets:
                ds = datasets[name]
                enc = {v: COMPRESSION for v in ("V", "death_time") if v in ds}
                ds.to_netcdf(tmp, mode="a", group=name, engine="h5netcdf", encoding=enc)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _kill_hook("write", count)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return digest


def open_cell_file(path, group=None):
    """One group of a cell file (None: the summary; "sde", "finite", "ode": raw), loaded."""
    with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
        return ds.load()


def _verify_cell(path, spec, chash):
    """Does an unrecorded cell file hold this cell, complete? (all groups open, key matches)"""
    try:
        summary = open_cell_file(path)
        a = summary.attrs
        if a.get("config_hash") != chash or a.get("cell_key") != canonical_json(spec["key"]):
            return False
        for name in RAW_GROUPS:
            if name in spec["sources"] and name not in spec.get("shared", {}):
                open_cell_file(path, name)
        return True
    except Exception:  # any failure to read = not a finished cell
        return False


def _store_entries(store):
    """Entries of STORE other than the lock and temporary files."""
    out = []
    for e in os.listdir(store):
        if e == LOCK or e.endswith(".tmp"):
            continue
        if e == CELL_DIR and os.path.isdir(os.path.join(store, e)) and not [
                f for f in os.listdir(os.path.join(store, e)) if not f.endswith(".tmp")]:
            continue
        out.append(e)
    return out


def check_store(store, config, resume):
    """Read-only checks of STORE before anything is written; returns the manifest or None.

    Without ``resume`` a non-empty STORE is refused; with it, a STORE made from another config
    (or not a sweep store) is refused. Missing or empty STORE: a fresh sweep.
    """
    if os.path.exists(store) and not os.path.isdir(store):
        raise CovsdeInputError(f"--out: {store} exists and is not a directory")
    if not os.path.exists(store):
        parent = os.path.dirname(os.path.abspath(store))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise CovsdeInputError(f"--out: {parent} exists and is not a directory")
        return None
    entries = _store_entries(store)
    if not entries:
        return None
    if not resume:
        raise CovsdeInputError(f"--out: {store} is not empty: use --resume to continue the "
                               f"sweep stored there, or give another --out")
    man = read_manifest(store)
    want = config_hash(config)
    if man.get("config_hash") != want:
        raise CovsdeInputError(f"--resume: {store} was made from a different config (config "
                               f"sha256 {str(man.get('config_hash'))[:12]}… here, "
                               f"{want[:12]}… now): use another --out")
    return man


class _Lock:
    def __init__(self, store):
        self.path = os.path.join(store, LOCK)
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise CovsdeInputError(f"--out: {os.path.dirname(self.path)} is in use by another "
                                   f"covsde sweep") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def plan(store, config, specs, manifest):
    """Which cells to compute: returns (todo specs, finished ids, notes) — reads only."""
    chash = config_hash(config)
    recorded = (manifest or {}).get("cells", {})
    todo, finished, notes = [], [], []
    for spec in specs:
        path = os.path.join(store, cell_relpath(spec))
        entry = recorded.get(spec["id"])
        if spec.get("shared") and not _shared_ok(store, spec, manifest):
            if entry is not None:
                notes.append(f"cell {spec['id']}: a shared sample it uses is missing or "
                             f"corrupt, recomputing")
        elif os.path.isfile(path):
            if entry is not None:
                if sha256_file(path) == entry.get("sha256"):
                    finished.append(spec["id"])
                    continue
                notes.append(f"cell {spec['id']}: checksum mismatch (corrupt file), recomputing")
            elif _verify_cell(path, spec, chash):
                finished.append(spec["id"])
                notes.append(f"cell {spec['id']}: written but not yet recorded, adopted")
                continue
            else:
                notes.append(f"cell {spec['id']}: unreadable or foreign file, recomputing")
        elif entry is not None:
            notes.append(f"cell {spec['id']}: file missing, recomputing")
        todo.append(spec)
    return todo, finished, notes


def _cell_entry(spec, digest, compute_s=None):
    return {"key": spec["key"], "axes": spec["axes"], "seeds": spec["seeds"],
            "file": cell_relpath(spec), "sha256": digest, "finished": _now(),
            "compute_s": compute_s}


def _new_manifest(config, specs):
    return {"format": STORE_FORMAT, "format_version": STORE_VERSION,
            "covsde_version": __version__, "config_hash": config_hash(config),
            "config": config, "axes": {k: list(v) for k, v in axis_values(config).items()},
            "n_cells": len(specs), "created": _now(), "cells": {}}


def _cost(spec):
    """A rough cost of a cell, to start the big ones first (does not affect results)."""
    src = spec["sources"]
    c = src["sde"]["paths"] * spec["ratio"] / src["sde"]["dt"] if "sde" in src else 0.0
    if "blowup" in src:  # 2 + 4 + 8 … times the first step's work; ~3 levels typical
        c += 7 * src["blowup"]["paths"] * spec["ratio"] / src["blowup"]["dt0"]
    if "finite" in src:
        w = spec["width"]
        c += src["finite"]["paths"] * spec["ratio"] * w * (4 + w / 64)
    return c


def run_sweep(config, store, workers=None, scheduler=None, resume=False, progress=True,
              log=print, inline=False):
    """Run (or resume) the sweep of a normalised ``config`` into the directory ``store``.

    ``workers``: processes of the default LocalCluster (default: the machine's cores; numba
    threads per worker = cores // workers). ``scheduler``: address of an existing Dask
    scheduler instead (``tcp://host:port``). ``inline``: no Dask at all — the cells run one
    after the other in this process with all cores' numba threads (the figure gallery; same
    results, same STORE). ``resume``: continue a STORE of the same config; a resume with
    nothing left to do writes nothing. Returns a dict of counts and times. Everything that
    can be refused is checked before STORE is touched.
    """
    if inline and (workers is not None or scheduler is not None):
        raise CovsdeInputError("inline runs in this process: give no workers or scheduler")
    if workers is not None and scheduler is not None:
        raise CovsdeInputError("give --workers or --scheduler, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise CovsdeInputError(f"--workers must be an integer >= 1, got {workers!r}")
    specs = cells(config, validate=False)
    check_store(store, config, resume)
    os.makedirs(os.path.join(store, CELL_DIR), exist_ok=True)
    with _Lock(store):
        manifest = check_store(store, config, resume=True)
        before = None if manifest is None else canonical_json(
            {k: v for k, v in manifest.items() if k != "updated"})
        if manifest is None:
            manifest = _new_manifest(config, specs)
        for d in (CELL_DIR, SHARED_DIR):  # partial writes of a killed run
            if os.path.isdir(os.path.join(store, d)):
                for e in os.listdir(os.path.join(store, d)):
                    if e.endswith(".tmp"):
                        os.remove(os.path.join(store, d, e))
        todo, finished, notes = plan(store, config, specs, manifest)
        if "shared" in manifest:  # a missing or corrupt shared sample is written again
            manifest["shared"] = {
                rel: sha for rel, sha in manifest["shared"].items()
                if os.path.isfile(os.path.join(store, rel))
                and sha256_file(os.path.join(store, rel)) == sha}
        for line in notes:
            log(line)
        for spec in specs:
            if spec["id"] in finished and spec["id"] not in manifest["cells"]:
                manifest["cells"][spec["id"]] = _cell_entry(
                    spec, sha256_file(os.path.join(store, cell_relpath(spec))))
        manifest["cells"] = {k: v for k, v in manifest["cells"].items() if k in finished}
        if before != canonical_json({k: v for k, v in manifest.items() if k != "updated"}):
            manifest["updated"] = _now()
            _atomic_json(manifest, os.path.join(store, MANIFEST))
        t0 = time.perf_counter()
        log(f"sweep: {len(specs)} cells, {len(finished)} already finished, {len(todo)} to "
            f"compute; store {store}")
        computed = 0
        info = {}
        if todo and inline:
            computed, info = _compute_inline(todo, store, config, manifest, progress)
        elif todo:
            computed, info = _compute(todo, store, config, manifest, workers, scheduler,
                                      progress, log)
        wall = time.perf_counter() - t0
        done = len(finished) + computed
        log(f"sweep done: {done}/{len(specs)} cells finished ({computed} computed now, "
            f"{len(finished)} skipped) in {wall:.1f} s"
            + (f" on {info['workers']} workers" if info.get("workers") else
               " in this process" if info else "")
            + (f" ({info['compute_s']:.1f} s of cell compute)" if info else "")
            + f"; open with compare.sweep.open_sweep({store!r})")
        return {"cells": len(specs), "computed": computed, "skipped": len(finished),
                "wall_s": wall, **info}


def _threads_per_worker(client):
    """numba threads per worker: the host's cores divided by the Dask threads on that host."""
    cpus = client.run(os.cpu_count)
    workers = client.scheduler_info()["workers"]
    per_host = {}
    for addr, w in workers.items():
        per_host[w["host"]] = per_host.get(w["host"], 0) + int(w.get("nthreads", 1))
    return {addr: max(1, int(cpus.get(addr) or 1) // per_host[w["host"]])
            for addr, w in workers.items()}


def write_shared(store, rel, ds):
    """Write a shared sample atomically (tmp, fsync, sha256, rename); return its sha256."""
    path = os.path.join(store, rel)
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        enc = {v: COMPRESSION for v in ("V", "death_time") if v in ds}
        ds.to_netcdf(tmp, mode="w", engine="h5netcdf", encoding=enc)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return digest


def _shared_ok(store, spec, manifest):
    """Are the shared samples a cell uses written and recorded (checksum matching)?"""
    rec = (manifest or {}).get("shared", {})
    for sh in spec.get("shared", {}).values():
        path = os.path.join(store, sh["file"])
        if sh["file"] not in rec or not os.path.isfile(path) or sha256_file(path) != rec[
                sh["file"]]:
            return False
    return True


def _record(store, spec, summary, datasets, chash, manifest, count):
    """Write a computed cell and record it in the manifest (client side); its compute s.

    A shared sample the cell used is written (once, under ``shared/``) and recorded before
    the cell; the cell file holds the other sources."""
    compute_s = sum(float(d.attrs.get("wall_time_s", 0.0)) for d in datasets.values())
    datasets = dict(datasets)
    rec = manifest.setdefault("shared", {})
    for name, sh in spec.get("shared", {}).items():
        ds = datasets.pop(name)
        if sh["file"] not in rec:
            rec[sh["file"]] = write_shared(store, sh["file"], ds)
            _atomic_json(manifest, os.path.join(store, MANIFEST))
    digest = write_cell(store, spec, summary, datasets, chash, count)
    manifest["cells"][spec["id"]] = _cell_entry(spec, digest, compute_s)
    manifest["updated"] = _now()
    _atomic_json(manifest, os.path.join(store, MANIFEST))
    _kill_hook("after", count)
    return compute_s


def _compute_inline(todo, store, config, manifest, progress):
    """The cells one after the other in this process (grid order, so cells sharing an SDE
    sample follow each other and reuse it), numba on all cores."""
    from tqdm.auto import tqdm

    chash = config_hash(config)
    threads = os.cpu_count() or 1
    compute_s = 0.0
    # cells that share a sample follow each other (the cache keeps the last few samples)
    todo = sorted(todo, key=lambda sp: [sp.get("shared", {}).get(n, {}).get("file", "")
                                        for n in ("finite", "sde")])
    with tqdm(total=len(todo), unit="cell", desc="sweep", disable=not progress,
              dynamic_ncols=True) as bar:
        for count, spec in enumerate(todo, 1):
            summary, datasets = run_cell(spec, threads)
            compute_s += _record(store, spec, summary, datasets, chash, manifest, count)
            bar.update(1)
    return len(todo), {"workers": 0, "compute_s": compute_s}


def _compute(todo, store, config, manifest, workers, scheduler, progress, log):
    import importlib.util
    import logging

    import dask
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    chash = config_hash(config)
    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise CovsdeInputError(f"--scheduler: cannot connect to {scheduler} "
                                   f"({type(exc).__name__})") from None
        threads = _threads_per_worker(client)
        n_workers = len(threads)
        if n_workers == 0:
            client.close()
            raise CovsdeInputError(f"--scheduler: {scheduler} has no workers")
    else:
        cores = os.cpu_count() or 1
        n_workers = workers or cores
        dash = ":0" if importlib.util.find_spec("bokeh") else None  # a free port
        # fork: workers inherit the imported modules (seconds saved per worker); the client
        # has run no numba parallel kernel, so forking is safe. COVSDE_SWEEP_MP=spawn overrides.
        method = os.environ.get("COVSDE_SWEEP_MP", "fork" if os.name == "posix" else "spawn")
        with dask.config.set({"distributed.worker.multiprocessing-method": method}):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=dash, scheduler_port=0,
                                   silence_logs=logging.ERROR)
        # not the default client: xarray would then take distributed locks (a scheduler
        # round trip per variable) for every netCDF write of the client
        client = Client(cluster, set_as_default=False)
        threads = max(1, cores // n_workers)
    has_dash = importlib.util.find_spec("bokeh") is not None
    link = client.dashboard_link if (scheduler is not None or has_dash) else None
    where = f"scheduler {scheduler}" if scheduler else f"LocalCluster of {n_workers} processes"
    log(f"dask: {where}" + (f"; dashboard {link}" if link else "; no dashboard (install "
                                                                "bokeh for one)"))
    compute_s = 0.0
    try:
        order = sorted(todo, key=_cost, reverse=True)
        futures, spec_of = [], {}
        tag = os.urandom(4).hex()
        for spec in order:
            fut = client.submit(run_cell, spec, threads, key=f"covsde-cell-{spec['id']}-{tag}",
                                pure=False)
            futures.append(fut)
            spec_of[fut.key] = spec
        count = 0
        with tqdm(total=len(todo), unit="cell", desc="sweep", disable=not progress,
                  dynamic_ncols=True) as bar:
            for fut in as_completed(futures, loop=client.loop):
                spec = spec_of[fut.key]
                try:
                    summary, datasets = fut.result()
                except CovsdeInputError:
                    raise
                except Exception as exc:
                    raise SweepError(f"cell {spec['id']} failed on a worker: "
                                     f"{type(exc).__name__}: {exc}") from None
                fut.release()
                count += 1
                compute_s += _record(store, spec, summary, datasets, chash, manifest, count)
                bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return count, {"workers": n_workers, "compute_s": compute_s}


# ---------------------------------------------------------------- reading
def open_sweep(store, partial=False, verify=True):
    """The sweep in ``store`` as one ``xarray.Dataset`` indexed by the grid axes.

    Dims: the grid axes in config order (``ratio``, ``width`` if finite, then any
    list-valued model / initial parameter), then ``stat``, ``source``, ``quantile``.
    Variables (per cell, at t = ratio): the distances finite-vs-SDE of each statistic
    (``ks``, ``w1``, … from :func:`compare_to_sde`, dims ``(*axes, stat)``),
    ``quantile_value (*axes, source, stat, quantile)``, ``n_paths``, ``n_alive``,
    ``dead_fraction`` and its interval ``(*axes, source)``; with ``boot_replicates``,
    ``ks_boot`` / ``w1_boot (*axes, stat, boot)``; with a blowup source
    ``blowup_probability``, ``blowup_ci95_low/high``, ``blowup_dt``, ``blowup_converged``,
    ``blowup_n_levels``, ``blowup_n_paths (*axes)``; the cell's seeds, and
    ``cell_file (*axes)``: the path of the raw cell file relative to ``store`` (its groups
    ``sde``, ``finite``, ``ode`` hold the raw datasets: :func:`open_cell`).

    ``partial``: allow unfinished cells (their values NaN, ``cell_file`` empty); otherwise
    an unfinished sweep is an error. ``verify``: check every file's sha256.
    """
    man = read_manifest(store)
    config = man["config"]
    specs = cells(config, validate=False)
    axes = axis_values(config)
    grid = np.empty([len(v) for v in axes.values()], dtype=object)
    missing = []
    template = None
    for spec in specs:
        idx = tuple(axes[k].index(spec["axes"][k]) for k in axes)
        entry = man["cells"].get(spec["id"])
        path = os.path.join(store, cell_relpath(spec))
        if entry is None or not os.path.isfile(path) or (
                verify and sha256_file(path) != entry.get("sha256")):
            missing.append(spec)
            continue
        ds = open_cell_file(path)
        ds.attrs = {}
        ds["cell_file"] = ((), cell_relpath(spec))
        for name, val in spec["seeds"].items():
            ds[f"seed_{name}"] = ((), np.int64(val))
        grid[idx] = ds.expand_dims({k: [spec["axes"][k]] for k in axes})
        template = grid[idx]
    if missing and not partial:
        raise CovsdeInputError(f"{store}: {len(missing)} of {len(specs)} cells are not finished "
                               f"(run covsde sweep --resume, or open_sweep(partial=True))")
    if template is None:
        raise CovsdeInputError(f"{store}: no finished cell")
    for spec in missing:
        idx = tuple(axes[k].index(spec["axes"][k]) for k in axes)
        blank = xr.full_like(template.drop_vars("cell_file"), np.nan, dtype=float)
        blank["cell_file"] = template["cell_file"].copy(
            data=np.full(template["cell_file"].shape, "", dtype=object))
        grid[idx] = blank.assign_coords({k: [spec["axes"][k]] for k in axes})
    out = xr.combine_nested(grid.tolist(), concat_dim=list(axes), combine_attrs="drop")
    out.attrs = {"sweep_store": os.path.abspath(store), "config": canonical_json(config),
                 "config_hash": man["config_hash"], "covsde_version": man["covsde_version"],
                 "compared_time": "each cell is compared at t = d/n = its ratio",
                 "distance_sides": "a = finite network, b = SDE (reference), point = ODE",
                 "n_cells": len(specs), "n_missing": len(missing)}
    return out


def open_cell(store, source="finite", **axes):
    """The raw dataset of one ``source`` (sde, finite, ode) of the cell at the given axis
    values, e.g. ``open_cell(STORE, "finite", ratio=0.5, width=64)``."""
    from sde.schema import validate_dataset

    man = read_manifest(store)
    names = list(axis_values(man["config"]))
    if set(axes) != set(names):
        raise CovsdeInputError(f"open_cell: give every axis ({', '.join(names)}), got "
                               f"{', '.join(axes) or 'none'}")
    for spec in cells(man["config"], validate=False):
        if all(np.isclose(spec["axes"][k], v) if isinstance(v, float) else spec["axes"][k] == v
               for k, v in axes.items()):
            path = os.path.join(store, cell_relpath(spec))
            if spec["id"] not in man["cells"] or not os.path.isfile(path):
                raise CovsdeInputError(f"open_cell: cell {spec['id']} is not finished")
            if source not in spec["sources"]:
                raise CovsdeInputError(f"open_cell: the sweep has no source {source!r}")
            if source == "blowup":  # the sequence of step sizes, not paths
                return open_cell_file(path, source)
            if source in spec.get("shared", {}):
                rel = spec["shared"][source]["file"]
                full = os.path.join(store, rel)
                if rel not in man.get("shared", {}) or not os.path.isfile(full):
                    raise CovsdeInputError(f"open_cell: shared sample {rel} is not finished")
                return validate_dataset(open_cell_file(full), full)
            return validate_dataset(open_cell_file(path, source), f"{path}:{source}")
    raise CovsdeInputError(f"open_cell: no cell at {axes}")
