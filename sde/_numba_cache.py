"""Private: make numba's on-disk cache writes safe between processes (imported by :mod:`sde`).

numba's ``IndexDataCacheFile.save`` reads a function's index, picks the next free
``<name>.N.nbc`` file, writes the index, then the data, with no lock between processes
(https://github.com/numba/numba/issues/10128). The lane kernels are compiled once per token
count m under one cache index, so two processes compiling *different* m at the same moment
(a sweep over m, two CLI runs, pytest-xdist workers) could pick the same data file, and the
index could end up pointing at the other m's machine code: loaded later without complaint
(the signatures are identical), it would run with the wrong m. An exclusive ``flock`` on the cache directory
around each save makes the read-pick-write sequence atomic between processes. Reads need no
lock (each file is replaced atomically). Compiled code and results are unchanged.

Where ``fcntl`` is missing (Windows) or numba's internals differ, nothing is patched.
"""
import functools
import os


def lock_cache_writes():
    """Wrap ``numba.core.caching.IndexDataCacheFile.save`` in a directory ``flock`` (once)."""
    try:
        import fcntl

        from numba.core import caching
    except ImportError:
        return False
    cls = getattr(caching, "IndexDataCacheFile", None)
    save = getattr(cls, "save", None)
    if save is None or getattr(save, "_covsde_locked", False):
        return save is not None

    @functools.wraps(save)
    def locked_save(self, key, data):
        path = getattr(self, "_cache_path", None)
        if path is None or not os.path.isdir(path):
            return save(self, key, data)
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)  # releases the lock

    locked_save._covsde_locked = True
    cls.save = locked_save
    return True
