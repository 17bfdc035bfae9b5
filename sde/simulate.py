"""Public entry point: :func:`simulate` integrates a model's covariance SDE (or its ODE).

The only module that knows both numba and xarray: it validates, spawns seeds, allocates
the output, calls :mod:`sde._kernels` chunk by chunk and wraps the result in the schema
of :mod:`sde.schema`.

Random numbers: paths are cut into fixed RNG blocks of :data:`RNG_BLOCK` paths; block k
draws from ``Generator(PCG64(SeedSequence(seed).spawn(n_blocks)[k]))``. Results depend
only on (seed, RNG_BLOCK), not on the numba thread count or on :data:`CHUNK_BLOCKS`.
"""
import datetime
import math
import numbers
import time as _time

import numpy as np
from tqdm.auto import tqdm

from . import _kernels
from .errors import CovsdeInputError
from .initial import validate_V0
from .models import Model
from .schema import make_dataset

RNG_BLOCK = 256
#: blocks handed to one kernel call (the prange width); not part of the result's identity.
CHUNK_BLOCKS = 8
DEFAULT_BOUND = 1e4
DEFAULT_MEMORY_LIMIT = 4 * 2 ** 30
METHODS = ("euler", "ode")
_DEFAULT_SAVED_TIMES = 100
#: largest step count and saved-time count accepted (beyond them arrays or int64 overflow).
MAX_STEPS = 2 ** 53
MAX_SAVED = 2 ** 27
#: seeds are stored as a netCDF int64 attribute.
MAX_SEED = 2 ** 63 - 1


def as_int(name, value, minimum):
    """``value`` as an int ≥ ``minimum`` (an integral float is accepted), else a clear error."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise CovsdeInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def as_seed(seed):
    """A seed: an integer in [0, 2**63 − 1] (it is stored as a netCDF int64 attribute)."""
    seed = as_int("seed", seed, 0)
    if seed > MAX_SEED:
        raise CovsdeInputError(f"seed must be an integer in [0, 2**63 - 1], got {seed}")
    return seed


def _positive(name, value):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise CovsdeInputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def time_grid(t_end, dt, save_every=None):
    """(n_steps, saved steps) for ``t_end = n_steps · dt``; saves first and last step."""
    t_end = _positive("t_end", t_end)
    dt = _positive("dt", dt)
    if dt > t_end:
        raise CovsdeInputError(f"dt must be <= t_end, got dt = {dt!r} > t_end = {t_end!r}")
    if t_end / dt > MAX_STEPS:
        raise CovsdeInputError(
            f"t_end/dt must be at most 2**53 steps, got t_end/dt = {t_end / dt!r}")
    n_steps = int(round(t_end / dt))
    if abs(n_steps * dt - t_end) > 1e-9 * t_end:
        raise CovsdeInputError(
            f"t_end must be a whole number of dt steps, got t_end/dt = {t_end / dt!r}")
    return n_steps, saved_steps(n_steps, save_every)


def saved_steps(n_steps, save_every=None):
    """Steps 0, k, 2k, … plus the last step; default k keeps at most ~100 saved times."""
    if save_every is None:
        save_every = max(1, math.ceil(n_steps / _DEFAULT_SAVED_TIMES))
    save_every = as_int("save_every", save_every, 1)
    if n_steps > MAX_STEPS:
        raise CovsdeInputError(f"at most {MAX_STEPS} steps, got {n_steps}")
    if n_steps // save_every + 2 > MAX_SAVED:
        raise CovsdeInputError(
            f"save_every = {save_every} would save {n_steps // save_every + 1} times, more "
            f"than {MAX_SAVED}: use a larger save_every (--save-every)")
    steps = np.arange(0, n_steps + 1, save_every, dtype=np.int64)
    if steps[-1] != n_steps:
        steps = np.append(steps, n_steps)
    return steps


def check_memory(n_paths, n_save, m, memory_limit):
    """Raise if the V array would exceed ``memory_limit`` bytes."""
    need = n_paths * n_save * m * m * 8
    if need > memory_limit:
        raise CovsdeInputError(
            f"output would need {need / 2 ** 30:.2f} GiB > memory limit "
            f"{memory_limit / 2 ** 30:.2f} GiB: use a larger save_every (--save-every), "
            f"fewer paths, or raise the limit (--memory-limit)")
    return need


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
    method : ``"euler"`` (Euler–Maruyama) or ``"ode"`` (drift only, classical RK4 at dt:
        the width-first limit).
    bound : float — a path with ``|V_ab| > bound`` (or a non-finite entry) has blown up.
    memory_limit : int — bytes allowed for the output V array.
    progress : bool, optional — tqdm bar (default: on when the run has > 10⁷ path-steps).

    Returns
    -------
    Dataset with ``V(path, time, token_a, token_b)`` and the rest of :mod:`sde.schema`.
    A path that leaves the PD cone or blows up is dead from that step: status 1 or 2,
    its death time recorded, V NaN from then on. Dead paths are counted, never dropped.
    """
    if not isinstance(model, Model):
        raise CovsdeInputError(f"model must be a covsde model object, got {type(model).__name__}")
    if method not in METHODS:
        raise CovsdeInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    V0 = validate_V0(V0)
    m = V0.shape[0]
    n_steps, steps = time_grid(t_end, dt, save_every)
    n_paths = as_int("n_paths", n_paths, 1)
    seed = as_seed(seed)
    bound = _positive("bound", bound)
    if np.max(np.abs(V0)) > bound:
        raise CovsdeInputError(f"V0 entries must be at most bound = {bound!r} in absolute "
                               f"value, got max |V0_ab| = {np.max(np.abs(V0))!r}")
    if method == "ode":
        n_paths = 1
    check_memory(n_paths, len(steps), m, memory_limit)
    coef = model.coef()
    t0 = _time.perf_counter()
    out_V = np.full((n_paths, len(steps), m, m), np.nan)
    status = np.zeros(n_paths, dtype=np.int8)
    death = np.full(n_paths, np.inf)
    if method == "ode":
        st, td = _kernels.integrate_ode(V0, coef, float(dt), n_steps, steps, bound, out_V[0])
        status[0], death[0] = st, td
    else:
        _run_euler(V0, coef, float(dt), n_steps, steps, bound, seed, out_V, status, death,
                   progress)
    wall = _time.perf_counter() - t0
    attrs = {
        "source": f"sde-{method}",
        **model.params(),
        "method": method,
        "scheme": "Euler-Maruyama" if method == "euler" else "classical RK4 on the drift",
        "seed": seed,
        "dt": float(dt),
        "t_end": float(t_end),
        "n_steps": n_steps,
        "save_every": int(steps[1] - steps[0]) if len(steps) > 1 else 1,
        "bound": bound,
        "rng_block": RNG_BLOCK,
        "m": m,
        "V0": V0.tolist(),
        "wall_time_s": wall,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    return make_dataset(out_V, status, death, steps, float(dt), attrs)


def block_generators(seed, n_paths):
    """One ``Generator`` per RNG block of :data:`RNG_BLOCK` paths, spawned from ``seed``."""
    n_blocks = math.ceil(n_paths / RNG_BLOCK)
    children = np.random.SeedSequence(seed).spawn(n_blocks)
    return [np.random.Generator(np.random.PCG64(c)) for c in children]


def _run_euler(V0, coef, dt, n_steps, steps, bound, seed, out_V, status, death, progress):
    n_paths = out_V.shape[0]
    gens = block_generators(seed, n_paths)
    if progress is None:
        progress = n_paths * n_steps > 10 ** 7
    spare = np.random.Generator(np.random.PCG64(0))  # pads the last chunk's tuple
    with tqdm(total=n_paths, unit="path", disable=not progress, leave=False) as bar:
        for c0 in range(0, len(gens), CHUNK_BLOCKS):
            chunk = gens[c0:c0 + CHUNK_BLOCKS]
            p0 = c0 * RNG_BLOCK
            p1 = min(n_paths, p0 + len(chunk) * RNG_BLOCK)
            starts = np.zeros(CHUNK_BLOCKS, dtype=np.int64)
            lens = np.zeros(CHUNK_BLOCKS, dtype=np.int64)
            for k in range(len(chunk)):
                starts[k] = k * RNG_BLOCK
                lens[k] = min(RNG_BLOCK, p1 - p0 - k * RNG_BLOCK)
            padded = tuple(chunk) + (spare,) * (CHUNK_BLOCKS - len(chunk))
            _kernels.simulate_blocks(padded, starts, lens, V0, coef, dt, n_steps, steps, bound,
                                     out_V[p0:p1], status[p0:p1], death[p0:p1])
            bar.update(p1 - p0)
