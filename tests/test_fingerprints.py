"""Results that must not move: sha256 fingerprints of fixed runs.

For every architecture (and heads, activations, hot regimes with dead paths) the runs of
``tests/fingerprint_cases.py`` — ``sde.simulate`` at m = 3 and 8, its ODE, and
``finite.sample`` with both samplers — are hashed (sha256 over V, status and death_time) and
compared with ``tests/fingerprints.json``.

* ``sde`` (numba kernels only): the hash of the float64 V must match bit for bit.
* ``finite``: status and death_time bit for bit, and V cast to float32. The finite samplers
  multiply matrices with numpy/BLAS, whose kernels (and so the last bits of a sum) may differ
  between processor types; float32 rounding keeps the check independent of that while still
  catching any change of the random stream or of a formula. With
  ``COVSDE_EXACT_FINGERPRINTS=1`` the float64 hash is checked for finite runs too (it was
  on the recording machine).

Regenerate only for a deliberate, documented change of results.
"""
import json
import os
import pathlib

import pytest

from fingerprint_cases import cases, digest, run

RECORDED = json.loads((pathlib.Path(__file__).parent / "fingerprints.json").read_text())
EXACT_FINITE = os.environ.get("COVSDE_EXACT_FINGERPRINTS") == "1"
CASES = cases()


def test_every_case_recorded():
    assert set(CASES) == set(RECORDED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fingerprint(name):
    kind, model, kw = CASES[name]
    ds = run(kind, model, kw)
    rec = RECORDED[name]
    assert int((ds.status.values != 0).sum()) == rec["dead"]
    if kind == "sde" or EXACT_FINITE:
        assert digest(ds, exact=True) == rec["exact"]
    assert digest(ds, exact=False) == rec["f32"]
