"""Sweeps on Dask: grids of SDE / finite-network cells that survive ``kill -9`` and resume.

:mod:`~compare.sweep.config` validates a TOML config of axes and lists its cells with their
seeds; :mod:`~compare.sweep.cell` computes one cell on a worker (sources, distances,
summary); :mod:`~compare.sweep.store` keeps the STORE (atomic cell files, manifest, lock) and
reads it back (:func:`open_sweep`, :func:`open_cell`); :mod:`~compare.sweep.schedule` runs
the cells (:func:`run_sweep`, on Dask or in this process).
"""
from .config import EXAMPLE_CONFIG, load_config, parse_config
from .schedule import SweepError, run_sweep
from .store import open_cell, open_sweep

__all__ = ["EXAMPLE_CONFIG", "SweepError", "load_config", "open_cell", "open_sweep", "parse_config",
           "run_sweep"]
