"""benchmarks/bench_gram_parts.py times the pass's own draws, and its interleaved-fold
prototype computes what the pass computes: the Generator's normals and fold_gram3's sums."""
import numpy as np
import pytest

from conftest import load_benchmark
from finite import reduced_kernels as rk
from sde import pcg64
from sde.runs import block_generators


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_gram_parts")


def test_chunk_draws_are_the_generators_normals(bench):
    reps = 40                                  # 15 360 draws: rejected first tries included
    G = np.empty((3, bench.CHUNK))
    row = pcg64.states(block_generators(4, 1))[0]
    ref = block_generators(4, 1)[0].standard_normal((reps, bench.CHUNK, 3))
    bench.paired_chunks(row, G, reps)
    np.testing.assert_array_equal(G, ref[-1].T)
    row1 = row.copy()
    bench.paired_chunks(row1, G, 0)
    np.testing.assert_array_equal(row1, row)


def test_fold_inside_draws_gives_the_draws_and_fold_gram3s_sums(bench):
    acc = np.random.default_rng(1).standard_normal((6, bench.CHUNK))
    K = np.empty((3, 3))
    rk.fold_gram3(acc, bench.CHUNK, 1, K)
    ref_sums = K[[0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]]
    rows = [pcg64.states(block_generators(5, 1))[0] for _ in range(2)]
    G, H, sums = np.empty((3, bench.CHUNK)), np.empty((3, bench.CHUNK)), np.zeros(6)
    bench.fold_inside_draws(rows[0], G, acc, sums, 3)
    bench.paired_chunks(rows[1], H, 3)
    np.testing.assert_array_equal(G, H)
    np.testing.assert_array_equal(rows[0], rows[1])
    np.testing.assert_array_equal(sums, ref_sums)
    # the comparison can fail: another slot order gives other bits
    rk.fold_gram3(acc[:, ::-1].copy(), bench.CHUNK, 1, K)
    assert not np.array_equal(K[[0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2]], ref_sums)


def test_runs_quick(bench, capsys):
    bench.main(["--quick"])
    out = capsys.readouterr().out
    assert "whole draw, paired (the sampler's)" in out and "fold alone" in out
