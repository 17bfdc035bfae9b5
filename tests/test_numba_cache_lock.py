"""sde installs a lock around numba's cache writes (sde/_numba_cache.py)."""
import fcntl
import os
import threading

from numba.core import caching

import sde  # noqa: F401  (installs the lock)


def test_lock_is_installed():
    assert getattr(caching.IndexDataCacheFile.save, "_covsde_locked", False)


def test_save_waits_for_the_directory_lock(tmp_path):
    cache = caching.IndexDataCacheFile(str(tmp_path), "f", source_stamp=("stamp", 1))
    done = threading.Event()

    def save():
        cache.save(("key", 1), b"data")
        done.set()

    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)      # another process saving
    t = threading.Thread(target=save)
    t.start()
    try:
        # held lock: the save cannot finish (without the lock it would at once)
        assert not done.wait(0.5)
    finally:
        os.close(fd)                     # release
    t.join(10)
    assert done.is_set()
    assert cache.load(("key", 1)) == b"data"
