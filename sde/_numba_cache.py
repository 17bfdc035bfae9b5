"""Private: make numba's on-disk cache writes safe between processes (imported by :mod:`sde`).

numba's ``IndexDataCacheFile.save`` reads a function's index, picks the next free
``<name>.N.nbc`` file, writes the index, then the data, with no lock between processes
(https://github.com/numba/numba/issues/10128). The lane kernels are compiled once per token
count m under one cache index, so two processes compiling *different* m at the same moment
(a sweep over m, two CLI runs, pytest-xdist workers) could pick the same data file, and the
index could end up pointing at the other m's machine code: loaded later without complaint
(the signatures are identical), it would run with the wrong m. An exclusive ``flock`` on the
cache directory around each save makes the read-pick-write sequence atomic between processes.
Reads need no lock (each file is replaced atomically). Compiled code and results are
unchanged.

Importing sde does not import numba: when ``numba.core.caching`` is not loaded yet, an
import hook patches it as soon as it is (numba loads it with the dispatcher, before any
function can be compiled). Where ``fcntl`` is missing (Windows) or numba's internals
differ, nothing is patched.
"""
import functools
import importlib.abc
import os
import sys

CACHING = "numba.core.caching"


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of numba's caching module to patch it."""

    def find_spec(self, name, path, target=None):
        if name != CACHING:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name):  # get_source, is_package, … of the real loader
        return getattr(self.loader, name)


def lock_cache_writes():
    """Wrap ``numba.core.caching.IndexDataCacheFile.save`` in a directory ``flock`` (once):
    now if numba's caching module is loaded, else when it is."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    caching = sys.modules.get(CACHING)
    if caching is not None:
        return _patch(caching)
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
    return True


def _patch(caching):
    import fcntl

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
