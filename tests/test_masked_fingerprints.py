"""Masked results that must not move: sha256 fingerprints of the runs of
``tests/masked_fingerprint_cases.py``, compared with ``tests/masked_fingerprints.json``.

Euler–Maruyama and RK4 with every mask kind at m = 3, 8, 16 through :func:`sde.simulate`, and
Euler (complete mask: Euler and SPD) driven by fixed supplied increments, all bit for bit
(float64 V, status, death time). The :func:`sde.simulate` runs were recorded from the per-path
masked kernel; every kernel that replaces it must reproduce these bits. The supplied-increment
runs are recorded through :func:`sde._kernels.increments_to_normals` (the increments become the
unit normals the PCG64 kernel draws, scaled back by the kernel's own code). Regenerate only for
a deliberate, documented change.
"""
import hashlib
import json
import pathlib

import numpy as np
import pytest

import sde
from fingerprint_cases import V3, V8, digest
from masked_fingerprint_cases import MASKS, MODELS, cases, supplied_increments
from sde import _kernels
from sde.masks import row_lists

RECORDED = json.loads((pathlib.Path(__file__).parent / "masked_fingerprints.json").read_text())
CASES = cases()
SUPPLIED = [(step, name, mname, m) for mname in ("causal", "sliding", "complete")
            for name in ("attention-hot", "block-h2") for m in (3, 8)
            for step in (("euler", "spd") if mname == "complete" else ("euler",))]


def test_every_case_recorded():
    keys = set(CASES) | {f"supplied-{s}-{n}-{k}-m{m}" for s, n, k, m in SUPPLIED}
    assert keys == set(RECORDED)


# m = 16 and the supplied-increment runs at m = 8 each compile a lane kernel the rest of the
# default suite does not need (≈ 15–20 s of CPU each, cold): they run with -m slow
SLOW = {n for n in CASES if n.endswith("-m16")}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(CASES)])
def test_masked_fingerprint(name):
    model, kw = CASES[name]
    kw = dict(kw)
    ds = sde.simulate(model, kw.pop("V0"), **kw)
    rec = RECORDED[name]
    assert int((ds.status.values != 0).sum()) == rec["dead"]
    assert digest(ds, exact=True) == rec["exact"]


def _supplied(step, model, V0, masked):
    m = V0.shape[0]
    dt, dW = supplied_increments(m)
    P, S = dW.shape[:2]
    out = np.full((P, S + 1, m, m), np.nan)
    st = np.zeros(P, np.int8)
    de = np.full(P, np.inf)
    coef = model.limit()
    rows = row_lists(model.attention_mask.matrix(m)) if masked else None
    _kernels.integrate_supplied(V0, coef, dt, dW, 1e4, out, st, de, method=step, rows=rows)
    return out, st, de


@pytest.mark.parametrize("step,name,mname,m", [
    pytest.param(*c, marks=pytest.mark.slow) if c[3] == 8 else c for c in SUPPLIED])
def test_supplied_fingerprint(step, name, mname, m):
    model = MODELS[name](MASKS.get(mname, {}))
    out, st, de = _supplied(step, model, V3 if m == 3 else V8, mname != "complete")
    h = hashlib.sha256()
    for a in (out, st, de):
        h.update(np.ascontiguousarray(a).tobytes())
    rec = RECORDED[f"supplied-{step}-{name}-{mname}-m{m}"]
    assert int((st != 0).sum()) == rec["dead"]
    assert h.hexdigest()[:24] == rec["exact"]
