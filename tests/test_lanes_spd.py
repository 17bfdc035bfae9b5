"""The SPD lane kernel is bit-identical to the per-path SPD kernel.

:func:`sde._kernels.simulate_blocks` (lanes) and ``simulate_blocks_per_path`` with ``method="spd"`` give
identical V, status and death times for every architecture, with partial blocks and idle
lanes, and in a hot regime with blow-ups (status 2) and, at a large step, the QR fallback.
"""
import functools

import numpy as np
import pytest

import sde
from sde import _kernels as K
from test_lanes import MODELS, run_kernel


# the SPD scheme's lane kernel is compiled for m = 2 and 3 by the rest of the default suite
# (tests/test_blowup.py); each further m costs a ≈ 30 s cold compile, so m = 4 and 8 run in
# -m slow and the default suite has the same architectures at m = 2 and 3
@pytest.mark.parametrize("name,m,dt,kw", [
    ("attention-h2", 3, 0.02, {}), ("mlp-relu", 3, 0.02, {}), ("mlp-tanh", 2, 0.02, {}),
    pytest.param("mlp-tanh", 4, 0.02, {}, marks=pytest.mark.slow), ("block", 3, 0.02, {}),
    pytest.param("block", 8, 0.02, {}, marks=pytest.mark.slow), ("hot", 3, 0.1, {"bound": 30.0}),
])
def test_spd_lane_kernel_bit_identical(name, m, dt, kw):
    model = MODELS.get(name) or sde.ShapedAttention(1.0, 0.4)
    V0 = sde.equicorrelated(m, 0.2)
    n = 2 * 256 + 37 if name != "block" else 300   # partial blocks, idle lanes
    args = (model, V0, n, 5, 1.0, dt)
    a = run_kernel(functools.partial(K.simulate_blocks, method="spd"), *args, **kw)
    b = run_kernel(functools.partial(K.simulate_blocks_per_path, method="spd"), *args, **kw)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.any(a[1] == 1)
    if name == "hot":
        assert np.any(a[1] == 2)
