"""The sweep STORE: atomic cell files, the manifest, the lock, and reading results back.

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
seed and the cell's parameter values (:func:`compare.sweep.config.cell_seeds`), so a resumed
sweep equals an uninterrupted one, whatever the worker count or scheduling.

``open_sweep(STORE)`` returns the results as one ``xarray.Dataset`` indexed by the grid axes;
``open_cell`` one raw dataset.

Test hook (tests only): the environment variable ``COVSDE_SWEEP_TEST_KILL`` = ``after:N``
makes the client SIGKILL itself after the N-th cell is recorded, ``write:N`` after the N-th
cell's temporary file is written and before it is renamed.

Length: writing a STORE and reading it back share its layout and checksums.
"""
import datetime
import fcntl
import hashlib
import json
import os
import signal

import numpy as np
import xarray as xr

from sde import __version__
from sde.errors import CovsdeInputError

from .cell import RAW_GROUPS
from .config import axis_values, canonical_json, cells, config_hash


STORE_FORMAT = "covsde-sweep"

STORE_VERSION = 1

MANIFEST = "manifest.json"

CELL_DIR = "cells"

LOCK = ".lock"

KILL_ENV = "COVSDE_SWEEP_TEST_KILL"

#: netCDF compression of the raw per-path variables.
COMPRESSION = {"zlib": True, "complevel": 4, "shuffle": True}

SHARED_DIR = "shared"


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


def _commit_file(tmp, path, before_rename=None):
    """Make the written ``tmp`` durable and rename it to ``path`` (fsync of the file, its
    sha256, an atomic rename, fsync of the folder); return the sha256. ``before_rename`` (no
    arguments) runs between the fsync and the digest: the tests' kill hook."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    if before_rename is not None:
        before_rename()
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))
    return digest


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
        return _commit_file(tmp, path, lambda: _kill_hook("write", count))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def write_shared(store, rel, ds):
    """Write a shared sample atomically (tmp, fsync, sha256, rename); return its sha256."""
    path = os.path.join(store, rel)
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        enc = {v: COMPRESSION for v in ("V", "death_time") if v in ds}
        ds.to_netcdf(tmp, mode="w", engine="h5netcdf", encoding=enc)
        return _commit_file(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    datasets = dict(datasets)
    compute_s = 0.0
    rec = manifest.setdefault("shared", {})
    for name, sh in spec.get("shared", {}).items():
        ds = datasets.pop(name)
        if sh["file"] not in rec:   # a shared sample's compute counts once, with its file
            compute_s += float(ds.attrs.get("wall_time_s", 0.0))
            rec[sh["file"]] = write_shared(store, sh["file"], ds)
            _atomic_json(manifest, os.path.join(store, MANIFEST))
    compute_s += sum(float(d.attrs.get("wall_time_s", 0.0)) for d in datasets.values())
    digest = write_cell(store, spec, summary, datasets, chash, count)
    manifest["cells"][spec["id"]] = _cell_entry(spec, digest, compute_s)
    manifest["updated"] = _now()
    _atomic_json(manifest, os.path.join(store, MANIFEST))
    _kill_hook("after", count)
    return compute_s


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
