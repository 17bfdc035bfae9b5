import importlib.util
import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("COVSDE_QUICK", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_spd(rng, m, cond=5.0):
    """A random SPD matrix with eigenvalues in [1, cond], roughly unit scale."""
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    ev = np.linspace(1.0, cond, m)
    V = (Q * ev) @ Q.T
    return 0.5 * (V + V.T) / ev.mean()


def load_benchmark(name):
    """The script ``benchmarks/<name>.py`` loaded as a module (not run)."""
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod



if os.environ.get("COVSDE_COMPILE_LOG"):  # what the suite compiles: tests/compile_log.py
    from compile_log import pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401
