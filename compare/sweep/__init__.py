"""Sweeps: a TOML config of axes (:mod:`~compare.sweep.config`), each cell simulated, sampled
and compared, stored in a resumable STORE and scheduled on Dask (:mod:`~compare.sweep.store`).
"""
from .config import EXAMPLE_CONFIG, load_config, parse_config
from .store import SweepError, open_cell, open_sweep, run_sweep

__all__ = ["EXAMPLE_CONFIG", "SweepError", "load_config", "open_cell", "open_sweep", "parse_config",
           "run_sweep"]
