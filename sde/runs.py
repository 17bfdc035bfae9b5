"""Run plumbing shared by :func:`sde.simulate` and :func:`finite.sample`, defined once.

Validators of run arguments, the time grid, the RNG blocks, the memory guard and the
provenance attributes every output dataset carries. (Atomic writes are in :mod:`sde.io`.)

Random numbers: paths are cut into fixed RNG blocks of :data:`RNG_BLOCK` paths; block k
draws from ``Generator(PCG64(SeedSequence(seed).spawn(n_blocks)[k]))``, so results depend only
on (seed, RNG_BLOCK), never on thread counts or on how blocks are chunked.
"""
import datetime
import math
import numbers

import numpy as np

from .errors import CovsdeInputError

RNG_BLOCK = 256
DEFAULT_MEMORY_LIMIT = 4 * 2 ** 30
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
        raise CovsdeInputError(f"{name} must be an integer >= {minimum}, got {value!r}", name)
    return int(value)


def as_seed(seed):
    """A seed: an integer in [0, 2**63 − 1] (it is stored as a netCDF int64 attribute)."""
    seed = as_int("seed", seed, 0)
    if seed > MAX_SEED:
        raise CovsdeInputError(f"seed must be an integer in [0, 2**63 - 1], got {seed}", "seed")
    return seed


def positive(name, value):
    """``value`` as a finite float > 0, else a clear error."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise CovsdeInputError(f"{name} must be a finite number > 0, got {value!r}", name)
    return float(value)


def time_grid(t_end, dt, save_every=None):
    """(n_steps, saved steps) for ``t_end = n_steps · dt``; saves first and last step."""
    t_end = positive("t_end", t_end)
    dt = positive("dt", dt)
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


def block_generators(seed, n_paths):
    """One ``Generator`` per RNG block of :data:`RNG_BLOCK` paths, spawned from ``seed``."""
    n_blocks = math.ceil(n_paths / RNG_BLOCK)
    children = np.random.SeedSequence(seed).spawn(n_blocks)
    return [np.random.Generator(np.random.PCG64(c)) for c in children]


#: every kernel call gets a tuple of exactly this many Generators (padded with idle blocks of
#: zero paths): numba compiles one specialisation per tuple length, and each costs tens of
#: seconds, so one length serves every chunk size (``CHUNK_BLOCKS`` ≤ this) and every test.
KERNEL_BLOCKS = 32


def kernel_chunks(gens, n_paths, chunk_blocks=KERNEL_BLOCKS):
    """Cut the RNG blocks ``gens`` into kernel calls of at most ``chunk_blocks`` blocks.

    Yields ``(padded, starts, lens, p0, p1)``: a tuple of :data:`KERNEL_BLOCKS` Generators
    (the chunk's, then idle padding), the local first path and length of each block
    (int64, zero for padding), and the chunk's global path range ``p0:p1``.
    """
    if not 1 <= chunk_blocks <= KERNEL_BLOCKS:
        raise ValueError(f"chunk_blocks must be in [1, {KERNEL_BLOCKS}], got {chunk_blocks}")
    spare = np.random.Generator(np.random.PCG64(0))  # never drawn from (its blocks are empty)
    for c0 in range(0, len(gens), chunk_blocks):
        chunk = gens[c0:c0 + chunk_blocks]
        p0 = c0 * RNG_BLOCK
        p1 = min(n_paths, p0 + len(chunk) * RNG_BLOCK)
        starts = np.zeros(KERNEL_BLOCKS, dtype=np.int64)
        lens = np.zeros(KERNEL_BLOCKS, dtype=np.int64)
        for k in range(len(chunk)):
            starts[k] = k * RNG_BLOCK
            lens[k] = min(RNG_BLOCK, p1 - p0 - k * RNG_BLOCK)
        yield tuple(chunk) + (spare,) * (KERNEL_BLOCKS - len(chunk)), starts, lens, p0, p1


def provenance(source, model, *, method, seed, dt, t_end, n_steps, steps, V0, wall, **extra):
    """The attributes every output dataset carries: source, every model parameter, the run's
    settings, the seed, the package version (added by the schema) and wall time.

    ``extra`` (sampler-specific settings) is inserted after the model parameters.
    """
    return {
        "source": source,
        **model.params(),
        "method": method,
        **extra,
        "seed": seed,
        "dt": float(dt),
        "t_end": float(t_end),
        "n_steps": n_steps,
        "save_every": int(steps[1] - steps[0]) if len(steps) > 1 else 1,
        "rng_block": RNG_BLOCK,
        "m": V0.shape[0],
        "V0": V0.tolist(),
        "wall_time_s": wall,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }


def check_model(model):
    """``model`` must be a covsde model object."""
    from .models import Model

    if not isinstance(model, Model):
        raise CovsdeInputError(f"model must be a covsde model object, got {type(model).__name__}")


__all__ = ["RNG_BLOCK", "DEFAULT_MEMORY_LIMIT", "MAX_STEPS", "MAX_SAVED", "MAX_SEED", "as_int",
           "as_seed", "positive", "time_grid", "saved_steps", "check_memory",
           "block_generators", "KERNEL_BLOCKS", "kernel_chunks", "provenance", "check_model"]
