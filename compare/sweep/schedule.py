"""Running a sweep: the cells to compute, on Dask or in this process, recorded as they finish.

``run_sweep(config, STORE)`` computes every cell of a config (:mod:`compare.sweep.config`) on
a ``dask.distributed`` cluster — a :class:`~distributed.LocalCluster` of processes sized to the
machine, or an existing scheduler by address — or, with ``inline=True``, one after the other
in this process. Each cell runs :func:`compare.sweep.cell.run_cell`; the client records it in
the STORE (:mod:`compare.sweep.store`) as soon as it arrives, so a killed sweep resumes where
it stopped. Seeds depend only on the root seed and the cell's parameter values, so results
do not depend on the worker count or the order of completion.
"""
import os
import time

from sde.errors import CovsdeInputError

from .cell import run_cell, run_cells
from .config import canonical_json, cells, config_hash
from .store import (CELL_DIR, MANIFEST, SHARED_DIR, _atomic_json, _cell_entry, _Lock, _new_manifest,
                    _now, _record, cell_relpath, check_store, plan, sha256_file)


class SweepError(RuntimeError):
    """A cell failed on a worker, or the cluster could not be reached."""


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


def _tasks(todo):
    """The cells as Dask tasks, biggest first: the cells that share a finite sample form one
    task (run one after the other on one worker, which computes the sample once instead of
    once per worker that meets one of them); every other cell is a task of its own. Only
    the placement changes: a cell's result depends on its seeds alone."""
    groups = {}
    for spec in sorted(todo, key=_cost, reverse=True):
        shared = spec.get("shared", {}).get("finite", {}).get("file")
        groups.setdefault(shared or spec["id"], []).append(spec)
    return sorted(groups.values(), key=lambda g: max(_cost(s) for s in g), reverse=True)


def _threads_per_worker(client):
    """numba threads per worker: the host's cores divided by the Dask threads on that host."""
    cpus = client.run(os.cpu_count)
    workers = client.scheduler_info()["workers"]
    per_host = {}
    for addr, w in workers.items():
        per_host[w["host"]] = per_host.get(w["host"], 0) + int(w.get("nthreads", 1))
    return {addr: max(1, int(cpus.get(addr) or 1) // per_host[w["host"]])
            for addr, w in workers.items()}


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
        futures, specs_of = [], {}
        tag = os.urandom(4).hex()
        for group in _tasks(todo):
            fut = client.submit(run_cells, group, threads,
                                key=f"covsde-cell-{group[0]['id']}-{tag}", pure=False)
            futures.append(fut)
            specs_of[fut.key] = group
        count = 0
        with tqdm(total=len(todo), unit="cell", desc="sweep", disable=not progress,
                  dynamic_ncols=True) as bar:
            for fut in as_completed(futures, loop=client.loop):
                group = specs_of[fut.key]
                try:
                    results = fut.result()
                except CovsdeInputError:
                    raise
                except Exception as exc:
                    ids = ", ".join(spec["id"] for spec in group)
                    raise SweepError(f"cell {ids} failed on a worker: "
                                     f"{type(exc).__name__}: {exc}") from None
                fut.release()
                for spec, (summary, datasets) in zip(group, results):
                    count += 1
                    compute_s += _record(store, spec, summary, datasets, chash, manifest,
                                         count)
                    bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return count, {"workers": n_workers, "compute_s": compute_s}
