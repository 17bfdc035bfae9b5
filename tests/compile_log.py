"""A pytest plugin for finding what the default suite spends compiling (loaded by
conftest.py when ``COVSDE_COMPILE_LOG=DIR`` is set).

Per pytest process it writes ``DIR/compile-PID.jsonl``, one line per numba compilation (a
cache miss: function, closure integers, argument types, seconds, nesting depth, the test
that triggered it), and ``DIR/kernels-PID.jsonl``, the SDE kernels ``(m, step, coef,
noise)`` each test left built, with their number of compiled signatures.
"""
import json
import os
import sys
import time

import pytest
from numba.core import event as _numba_event

_current_test = {"id": "(collection)"}


class _CompileLog(_numba_event.Listener):
    def __init__(self, path):
        self.path, self.starts = path, []

    def on_start(self, ev):
        self.starts.append(time.perf_counter())

    def on_end(self, ev):
        dt = time.perf_counter() - self.starts.pop()
        disp = ev.data["dispatcher"]
        consts = [c.cell_contents for c in (disp.py_func.__closure__ or ())
                  if isinstance(c.cell_contents, int)]
        with open(self.path, "a") as f:
            f.write(json.dumps({"fn": disp.py_func.__module__ + "." + disp.py_func.__qualname__,
                                "consts": consts, "args": str(ev.data["args"])[:200],
                                "s": round(dt, 3),
                                "depth": len(self.starts), "test": _current_test["id"],
                                "pid": os.getpid()}) + "\n")


os.makedirs(os.environ["COVSDE_COMPILE_LOG"], exist_ok=True)
_numba_event.register("numba:compile", _CompileLog(os.path.join(
    os.environ["COVSDE_COMPILE_LOG"], f"compile-{os.getpid()}.jsonl")))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _current_test["id"] = item.nodeid


_seen_kernels = {}


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    loops = sys.modules.get("sde._kernels.loops")
    if loops is None:
        return
    for kind, table in (("lanes", loops._LANES), ("path", loops._PATHS)):
        for key, k in list(table.items()):
            n = len(k.signatures)
            if _seen_kernels.get((kind, key)) != n:
                _seen_kernels[(kind, key)] = n
                with open(os.path.join(os.environ["COVSDE_COMPILE_LOG"],
                                       f"kernels-{os.getpid()}.jsonl"), "a") as f:
                    f.write(json.dumps({"kind": kind, "key": list(key), "signatures": n,
                                        "test": item.nodeid}) + "\n")
