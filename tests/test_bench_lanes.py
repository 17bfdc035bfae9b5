"""benchmarks/bench_lanes.py measures draws that are the sampler's: each prototype variant
draws, per lane, exactly its block's ``Generator(PCG64).standard_normal`` sequence (the
wedge and tail branches included: 8 × 20 003 draws take the scalar rest ~1 600 times and the
tail ~600 times), and leaves every lane's state where numpy's Generator leaves it."""
import numpy as np
import pytest

from conftest import load_benchmark
from sde import pcg64
from sde.runs import RNG_BLOCK, block_generators


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_lanes")


@pytest.mark.parametrize("kind, vector, jump", [("lanes", 4, 2), ("lanes-signed", 4, 2)])
def test_variant_draws_numpy_normals(bench, kind, vector, jump):
    fill, make_state = bench.variant(kind, vector, jump)
    K = 20_003                                   # not a multiple of the round: the tail too
    state = make_state(pcg64.states(block_generators(3, bench.LANES * RNG_BLOCK)))
    out = np.empty((K, bench.LANES))
    fill(*state, out)
    gens = block_generators(3, bench.LANES * RNG_BLOCK)
    ref = np.stack([g.standard_normal(K) for g in gens], axis=1)
    np.testing.assert_array_equal(out, ref)
    assert np.abs(ref).max() > 3.7                # tail draws (beyond r = 3.654) were taken
    hi, lo = state[:2]
    for g, h, w in zip(gens, hi, lo):
        assert ((int(h) << 64) | int(w)) == g.bit_generator.state["state"]["state"]
