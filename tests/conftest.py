import os

import numpy as np
import pytest

os.environ.setdefault("COVSDE_QUICK", "1")


def _lock_numba_cache_writes():
    """Under pytest-xdist (``make test`` runs 2 workers), serialise numba's cache writes.

    numba's ``IndexDataCacheFile.save`` reads the function's index, picks the next free
    ``.N.nbc`` name, writes the index, then the data, with no lock (numba/numba#10128). Two
    workers saving *different* specialisations of one function (e.g. the lane kernel at two
    token counts) at the same moment can pick the same name, and the index can then point
    at the other specialisation's code. An exclusive ``flock`` on the cache directory around
    each save makes the three steps atomic between the workers; reads need none (each file is
    replaced atomically). Writes only: results and compiled code are unchanged.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import fcntl
    import functools

    from numba.core import caching

    cls = getattr(caching, "IndexDataCacheFile", None)
    if cls is None or getattr(cls.save, "_covsde_locked", False):
        return
    save = cls.save

    @functools.wraps(save)
    def locked_save(self, key, data):
        fd = os.open(self._cache_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)   # releases the lock

    locked_save._covsde_locked = True
    cls.save = locked_save


_lock_numba_cache_writes()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_spd(rng, m, cond=5.0):
    """A random SPD matrix with eigenvalues in [1, cond], roughly unit scale."""
    Q, _ = np.linalg.qr(rng.standard_normal((m, m)))
    ev = np.linspace(1.0, cond, m)
    V = (Q * ev) @ Q.T
    return 0.5 * (V + V.T) / ev.mean()
