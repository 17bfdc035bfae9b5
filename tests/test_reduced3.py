"""The m = 3 kernels (finite/reduced3.py) equal the generic reduced kernels bit for bit."""
import numpy as np
import pytest

from finite import reduced3 as r3
from finite import reduced_kernels as rk
from sde import pcg64
from sde.masks import centring_matrix
from sde.runs import block_generators

P = 96   # paths, in three RNG blocks of unequal sizes
BOUNDS = np.array([0, 40, 41, 96])


def _states():
    """Paths' block Grams (P, 1, 3, 3): random SPD, a few singular (clipped), one
    indefinite (failed), one non-finite."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((P, 3, 6))
    Vh = (X @ np.swapaxes(X, -1, -2) / 6)[:, None]
    Vh[3, 0] = np.outer([1.0, 2.0, -1.0], [1.0, 2.0, -1.0])           # rank one
    Vh[7, 0] = np.full((3, 3), 0.7)                                     # rank one
    Vh[11, 0] = np.diag([1.0, -0.5, 1.0])                               # indefinite
    Vh[19, 0, 1, 2] = Vh[19, 0, 2, 1] = np.inf                          # non-finite
    Vh[23, 0] = np.eye(3) * 1e-300                                      # tiny
    return Vh


def _run(kernel, Vh, args, extra=()):
    rows = pcg64.states(block_generators(11, P))[:3].copy()
    out = Vh.copy()
    failed, clipped = np.zeros(P, dtype=bool), np.zeros(P, dtype=np.int64)
    kernel(rows, BOUNDS, out, *args, failed, clipped, *extra)
    return out, failed, clipped, rows


def _same(a, b):
    for x, y in zip(a, b):
        assert np.array_equal(x, y, equal_nan=True)
        assert x.tobytes() == y.tobytes() or np.isnan(x).any()


@pytest.mark.parametrize("width,key_width", [(6, 4), (8, 3), (64, 16), (300, 300)])
@pytest.mark.parametrize("mask", ["complete", "causal"])
def test_attention_kernel3_equals_generic(width, key_width, mask):
    M = np.ones((3, 3)) if mask == "complete" else np.tril(np.ones((3, 3)))
    C = np.full((3, 3), 1 / 3) if mask == "complete" else centring_matrix(M)
    args = (0.4, 0.8, width, key_width, M, C, 1e-8)
    extra = (np.empty((3, 1, 1, 1, 1)), False)
    assert r3.attention_kernel_for(3, 1, False, width, key_width) is r3.attention_kernel3
    new = _run(r3.attention_kernel3, _states(), args, extra)
    old = _run(rk.attention_kernel, _states(), args, extra)
    _same(new, old)
    assert new[1].sum() == 2 and new[2].sum() > 0          # the failures and clips were met
    alive = ~new[1]
    assert np.isfinite(new[0][alive]).all() and not np.array_equal(new[0], _states())


@pytest.mark.parametrize("width", [7, 8, 128, 300])
def test_mlp_kernel3_equals_generic(width):
    a1, a2 = 1.0, 1.0 - 1.0 / np.sqrt(width)
    args = (True, 0.35, 1.7, width, rk.ACT_RELU, a1, a2, np.empty((0, 1, 1)), 1e-8)
    assert r3.mlp_kernel_for(3, 1, True, width, rk.ACT_RELU) is r3.mlp_kernel3
    new = _run(r3.mlp_kernel3, _states(), args)
    old = _run(rk.mlp_kernel, _states(), args)
    _same(new, old)
    assert new[1].sum() == 2 and new[2].sum() > 0
    alive = ~new[1]
    assert np.isfinite(new[0][alive]).all() and not np.array_equal(new[0], _states())


def test_dispatch_keeps_the_generic_kernels_elsewhere():
    assert r3.attention_kernel_for(3, 2, False, 64, 32) is rk.attention_kernel
    assert r3.attention_kernel_for(3, 1, True, 64, 64) is rk.attention_kernel
    assert r3.attention_kernel_for(4, 1, False, 64, 64) is rk.attention_kernel
    assert r3.attention_kernel_for(3, 1, False, 64, 2) is rk.attention_kernel
    assert r3.mlp_kernel_for(3, 1, False, 64, rk.ACT_RELU) is rk.mlp_kernel
    assert r3.mlp_kernel_for(3, 1, True, 64, rk.ACT_TANH) is rk.mlp_kernel
    assert r3.mlp_kernel_for(3, 1, True, 5, rk.ACT_RELU) is rk.mlp_kernel
