"""Public entry point: :func:`simulate` integrates a model's covariance SDE (or its ODE).

The only module that knows both numba and xarray: it validates, spawns seeds, allocates
the output, calls :mod:`sde._kernels` chunk by chunk and wraps the result in the schema
of :mod:`sde.schema`.

Random numbers: paths are cut into fixed RNG blocks of :data:`RNG_BLOCK` paths; block k
draws from ``Generator(PCG64(SeedSequence(seed).spawn(n_blocks)[k]))``. Results depend
only on (seed, RNG_BLOCK), not on the numba thread count or on :data:`CHUNK_BLOCKS`.
"""
import functools
import time as _time

import numpy as np
from tqdm.auto import tqdm

from . import _kernels, masks
from .runs import (_DEFAULT_SAVED_TIMES, DEFAULT_MEMORY_LIMIT, MAX_SAVED, MAX_SEED,
                   MAX_STEPS, RNG_BLOCK, KERNEL_BLOCKS, as_int, as_seed, block_generators,
                   check_memory, check_model, kernel_chunks, positive, provenance, saved_steps, time_grid)
from .errors import CovsdeInputError
from .initial import validate_V0
from .schema import make_dataset

# The run plumbing is re-exported here for existing callers (``sde.simulate.as_int`` …).
__all__ = ["simulate", "METHODS", "DEFAULT_BOUND", "CHUNK_BLOCKS", "RNG_BLOCK", "MAX_STEPS",
           "MAX_SAVED", "MAX_SEED", "DEFAULT_MEMORY_LIMIT", "_DEFAULT_SAVED_TIMES", "as_int",
           "as_seed", "block_generators", "check_memory", "saved_steps", "time_grid"]

#: blocks handed to one kernel call (NL = 8 blocks per lane group, groups in parallel); not
#: part of the result's identity. At most KERNEL_BLOCKS (the padded tuple length).
CHUNK_BLOCKS = KERNEL_BLOCKS
DEFAULT_BOUND = 1e4
METHODS = ("euler", "spd", "ode")
#: the scheme each method names (the ``scheme`` attribute of the output).
SCHEMES = {
    "euler": "Euler-Maruyama",
    "spd": "SPD-preserving exponential congruence step (docs/theory.md §4.7)",
    "ode": "classical RK4 on the drift",
}


def simulate(model, V0, *, t_end, dt, n_paths=1, seed, save_every=None, method="euler",
             bound=DEFAULT_BOUND, memory_limit=DEFAULT_MEMORY_LIMIT, progress=None):
    """Integrate ``model``'s covariance SDE from ``V0``; return an ``xarray.Dataset``.

    Parameters
    ----------
    model : :class:`sde.models.Model`
    V0 : (m, m) symmetric positive definite array, m ≥ 2.
    t_end : float — terminal time T = d/n; must be a whole number of ``dt`` steps.
    dt : float — step size.
    n_paths : int — Monte Carlo paths (``method="ode"`` always integrates one path).
    seed : int ≥ 0 — root of the ``SeedSequence``.
    save_every : int, optional — save every k-th step (default: at most ~100 saved
        times); the first and last steps are always saved.
    method : ``"euler"`` (Euler–Maruyama), ``"spd"`` (the SPD-preserving step of
        docs/theory.md §4.7: same increments, never leaves the PD cone, weak order 1) or
        ``"ode"`` (drift only, classical RK4 at dt: the width-first limit).
    bound : float — a path with ``|V_ab| > bound`` (or a non-finite entry) has blown up.
    memory_limit : int — bytes allowed for the output V array.
    progress : bool, optional — tqdm bar (default: on when the run has > 10⁷ path-steps).

    Returns
    -------
    Dataset with ``V(path, time, token_a, token_b)`` and the rest of :mod:`sde.schema`.
    A path that leaves the PD cone (``euler`` only) or blows up is dead from that step:
    status 1 or 2, its death time recorded, V NaN from then on. Dead paths are counted,
    never dropped.
    """
    check_model(model)
    if method not in METHODS:
        raise CovsdeInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    V0 = validate_V0(V0)
    m = V0.shape[0]
    n_steps, steps = time_grid(t_end, dt, save_every)
    n_paths = as_int("n_paths", n_paths, 1)
    seed = as_seed(seed)
    bound = positive("bound", bound)
    if np.max(np.abs(V0)) > bound:
        raise CovsdeInputError(f"V0 entries must be at most bound = {bound!r} in absolute "
                               f"value, got max |V0_ab| = {np.max(np.abs(V0))!r}")
    if method == "ode":
        n_paths = 1
    check_memory(n_paths, len(steps), m, memory_limit)
    coef = model.limit()
    t0 = _time.perf_counter()
    out_V = np.full((n_paths, len(steps), m, m), np.nan)
    status = np.zeros(n_paths, dtype=np.int8)
    death = np.full(n_paths, np.inf)
    mask = masks.run_matrix(model, m, seed)  # realised mask (docs/theory.md §3.5)
    rows = None
    if mask is not None and not masks.is_complete_matrix(mask):
        rows = masks.row_lists(mask)
    if method == "ode":
        idx, cnt = rows if rows is not None else _kernels.no_mask(m)
        st, td = _kernels.integrate_ode(V0, coef, rows is not None, idx, cnt, float(dt),
                                        n_steps, steps, bound, out_V[0])
        status[0], death[0] = st, td
    else:
        kernel = functools.partial(_kernels.simulate_blocks, method=method, rows=rows)
        _run_blocks(kernel, V0, coef, float(dt), n_steps, steps, bound, seed, out_V, status,
                    death, progress)
    wall = _time.perf_counter() - t0
    attrs = provenance(
        f"sde-{method}", model, method=method, seed=seed, dt=dt, t_end=t_end,
        n_steps=n_steps, steps=steps, V0=V0, wall=wall, bound=bound,
        scheme=SCHEMES[method], **masks.run_attrs(model, m, seed))
    return make_dataset(out_V, status, death, steps, float(dt), attrs)


def _run_blocks(kernel, V0, coef, dt, n_steps, steps, bound, seed, out_V, status, death,
                progress):
    """Call ``kernel`` (:func:`sde._kernels.simulate_blocks` with its method and mask) chunk
    by chunk."""
    n_paths = out_V.shape[0]
    gens = block_generators(seed, n_paths)
    if progress is None:
        progress = n_paths * n_steps > 10 ** 7
    with tqdm(total=n_paths, unit="path", disable=not progress, leave=False) as bar:
        for padded, starts, lens, p0, p1 in kernel_chunks(gens, n_paths, CHUNK_BLOCKS):
            kernel(padded, starts, lens, V0, coef, dt, n_steps, steps, bound,
                   out_V[p0:p1], status[p0:p1], death[p0:p1])
            bar.update(p1 - p0)
