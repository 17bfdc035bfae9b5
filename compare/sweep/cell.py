"""One sweep cell, computed on a worker: the sources, the distances, the summary.

A cell (one point of the grid) runs (models, SDE and finite networks as in
``docs/theory.md``): the SDE (Euler–Maruyama) from V0 to ``t = ratio``, optionally the ODE,
and optionally the finite network at ``width`` to depth ``ratio · width``; then the distances
finite-vs-SDE at ``t = ratio`` for every statistic (through :func:`compare_to_sde`, the one
call into :mod:`compare.distances`), the quantiles of each source, alive counts and dead
fractions (censoring: statistics over the paths alive at ``t``); with ``[sources.blowup]``,
the SDE's own ``P(τ ≤ T = ratio)`` converged in dt (:func:`run_blowup`, which is
:func:`sde.blowup.blowup_probability` with the cell's seed). The worker returns all of
it; only the client writes to the STORE (:mod:`compare.sweep.store`).
"""
import json
import warnings

import numpy as np
import xarray as xr

from sde.errors import CovsdeInputError


#: sources whose raw dataset has paths (the usual schema).
SOURCE_ORDER = ("sde", "ode", "finite")

#: groups of a cell file: the path sources, then the blow-up sequence (one row per dt).
RAW_GROUPS = SOURCE_ORDER + ("blowup",)

#: shared samples (``sources.<name>.share``) kept by run_cell for the next cells that use them.
_SHARED_CACHE = {}

_SHARED_CACHE_SIZE = 3


def _cached(name, make):
    if name not in _SHARED_CACHE:
        while len(_SHARED_CACHE) >= _SHARED_CACHE_SIZE:
            _SHARED_CACHE.pop(next(iter(_SHARED_CACHE)))
        _SHARED_CACHE[name] = make()
    return _SHARED_CACHE[name]


def compare_to_sde(finite_ds, sde_ds, stats, t, n_boot, seed, ode_ds=None):
    """Distances finite-vs-SDE at time ``t``: the sweep's only call into compare.distances.

    Returns a ``pandas.DataFrame`` with one row per statistic (column ``stat``) and numeric
    columns (KS, W1, intervals, floors, …): every numeric column except the quantiles (stored
    per source by the sweep) becomes a variable of dims ``(stat,)`` in the sweep dataset.
    """
    from ..distances import distances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead fractions are stored beside every distance
        return distances(finite_ds, sde_ds, stats=list(stats), times=[t], n_boot=n_boot,
                         seed=seed, point=ode_ds)


def run_cell(spec, threads=1):
    """Compute one cell (a spec from :func:`compare.sweep.config.cells`).

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


def run_cells(specs, threads=1):
    """:func:`run_cell` on each spec in turn (one Dask task for cells that share a sample):
    a list of ``(summary, datasets)``."""
    return [run_cell(spec, threads) for spec in specs]


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

    from ..statistics import compute_stat

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
    from ..distances import bootstrap_distances, censoring_bound, usable_paths
    from ..statistics import compute_stat

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
        "P(tau <= T), T = ratio: the dead fraction at the step blowup_dt where, at two "
        "halvings in a row, the paired interval of P(2 dt) - P(dt) times 1/(2^0.5 - 1) (the "
        "bias left at dt for weak order 1/2) lies inside +-blowup_tolerance "
        "(sde.blowup.blowup_probability); the finest step's value if not converged")
    summary["blowup_converged"].attrs["long_name"] = (
        "1 = converged in dt, 0 = not converged (more paths needed, still moving with dt, or "
        "the last halving unconfirmed)")
