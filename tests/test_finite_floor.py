"""The reduced samplers' inline stream (finite/inline_rng.py, finite/streams.py,
finite/reduced_kernels.py): its draws, its documented order, its independence of threads, and
the law of the samplers against the reference that drew through numpy's Generator
(tests/reduced_reference.py).

Law test: two-sample KS (``scipy.stats.ks_2samp``) of the reference against the package's
reduced sampler on every V_ab (a ≤ b) and ρ_ab (a < b) after 4 layers at n = 24 — 9
statistics, Bonferroni at family level 1e-3 (reject when the smallest p-value is below
1.1·10⁻⁴) — with 2·10⁴ paths each (KS critical distance ≈ 2.3·sqrt(2/N) ≈ 0.023). Each case
has a negative control: the SAME test against the package's sampler of a model with γ +15 %
(0.5 → 0.575) or, for the Li–Nica–Roy MLP (no γ), width +15 % (24 → 28); it must be rejected
at a threshold 10× stricter. Smallest p-values measured when written are in CASES.
"""
import functools
import importlib

import numpy as np
import pytest
import scipy.stats
import xarray as xr

import reduced_reference as ref
from finite import inline_rng, sample
from finite import reduced_kernels as rk
from finite.streams import BlockStreams, as_stream
from sde import ShapedAttention, ShapedBlock, ShapedMLP, pcg64
from sde.runs import block_generators

fs = importlib.import_module("finite.sample")  # the module (the package exports the function)

V0 = np.array([[1.0, 0.3, -0.2], [0.3, 0.8, 0.1], [-0.2, 0.1, 1.3]])
ALPHA = 1e-3


def _gen(seed):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


# ---------------------------------------------------------------- draws

@pytest.mark.parametrize("df", [1.0, 2.0, 3.0, 5.0, 24.0, 1021.0])
def test_chisquare_equals_numpy(df):
    """χ²_df from the inline stream equals ``Generator.chisquare`` draw for draw (shape
    df/2 = 0.5 and 1 take numpy's other branches: exponential ziggurat, rejection for
    shape < 1), and leaves the stream where numpy does."""
    n = 20_000
    rows = pcg64.states([_gen(5)])
    ours = np.empty(n)
    inline_rng.fill_chisquare(rows[0], df, ours)
    g = _gen(5)
    np.testing.assert_array_equal(ours, g.chisquare(df, n))
    after = np.empty(3)
    inline_rng.fill_normals(rows[0], after)
    np.testing.assert_array_equal(after, g.standard_normal(3))


def test_standard_normal_equals_numpy():
    """:func:`finite.inline_rng.fill_normals` (the samplers' paired draw) equals
    ``Generator.standard_normal`` draw for draw, over enough draws to take the wedge and the
    tail branches many times, and leaves the stream where numpy does."""
    n = 2_000_000
    rows = pcg64.states([_gen(9)])
    ours = np.empty(n)
    inline_rng.fill_normals(rows[0], ours)
    g = _gen(9)
    want = g.standard_normal(n)
    assert np.sum(np.abs(want) > 3.6541528853610088) > 100     # the tail branch was taken
    np.testing.assert_array_equal(ours, want)
    np.testing.assert_array_equal(pcg64.states([g])[0], rows[0])


def test_chisquare_negative_control():
    """The comparison above can fail: another df gives other draws."""
    rows = pcg64.states([_gen(5)])
    ours = np.empty(1000)
    inline_rng.fill_chisquare(rows[0], 3.0, ours)
    assert np.mean(ours == _gen(5).chisquare(3.3, 1000)) < 0.01


def test_block_stream_draws_and_writes_back():
    gens = block_generators(3, 600)
    streams = BlockStreams(gens)
    s1 = list(streams)[1]
    x = s1.standard_normal((4, 5))
    ref_gen = block_generators(3, 600)[1]
    np.testing.assert_array_equal(x, ref_gen.standard_normal((4, 5)))
    streams.write_back()
    np.testing.assert_array_equal(gens[1].standard_normal(7), ref_gen.standard_normal(7))
    g = _gen(8)
    st = as_stream(g)
    y = st.standard_normal(6)
    st.finish()
    h = _gen(8)
    np.testing.assert_array_equal(y, h.standard_normal(6))
    np.testing.assert_array_equal(g.standard_normal(3), h.standard_normal(3))


@pytest.mark.parametrize("width", [1, 127, 128, 300])
def test_m3_relu_gram_pass_gives_the_generic_bits(width):
    """The hidden Gram's m = 3 ReLU pass (taken for a lower-triangular L) equals the generic
    pass (taken here by declaring L full) bit for bit, and leaves the stream at the same
    state; a changed slope changes K (the comparison can fail)."""
    L = np.linalg.cholesky(np.array([[1.0, 0.3, 0.2], [0.3, 1.2, -0.1], [0.2, -0.1, 0.8]]))
    chunk = rk.GRAM_CHUNK

    def gram(lower, a2=-0.4):
        rows = pcg64.states(block_generators(9, 300)[:1])
        K = np.empty((3, 3))
        rk.hidden_gram_path(rows[0], L, lower, rk.ACT_RELU, 1.1, a2, width, K,
                            np.empty((3, chunk)), np.empty((3, chunk)), np.empty((6, chunk)))
        return K, rows

    (K3, rows3), (Kg, rowsg) = gram(True), gram(False)
    np.testing.assert_array_equal(K3, Kg)
    np.testing.assert_array_equal(rows3, rowsg)
    assert not np.array_equal(gram(True, a2=-0.5)[0], K3)


# ---------------------------------------------------------------- the documented stream

def test_lnr_layer_follows_the_documented_stream():
    """Li–Nica–Roy, one layer: path i of block 0 draws its (n, m) normals column by column
    (m per column), and V' = c s(L G) s(L G)ᵀ / n."""
    model, n, p, m = ShapedMLP(0.5, -1.0), 20, 30, 3
    ds = sample(model, V0, width=n, n_paths=p, seed=4, depth=1, threads=1)
    phi, c = model.activation_at(n)
    L = np.linalg.cholesky(V0)
    G = np.swapaxes(block_generators(4, p)[0].standard_normal((p, n, m)), -1, -2)
    S = phi(L @ G)
    np.testing.assert_allclose(ds.V.values[:, -1], c * S @ np.swapaxes(S, -1, -2) / n,
                               rtol=1e-12, atol=1e-13)


def test_attention_layer_follows_the_documented_stream():
    """Shaped attention, one head, one layer: per path, G_Q G_Kᵀ = M_Q Bᵀ (M_Q, then B's χ²
    diagonal and lower normals), then M, then W's Bartlett factor — rebuilt here with numpy's
    Generator calls in that order — through the documented formula."""
    model, n, p, m = ShapedAttention(0.5, 0.7), 16, 5, 3
    ds = sample(model, V0, width=n, n_paths=p, seed=6, depth=1, threads=1)
    gen = block_generators(6, p)[0]

    def bartlett(k):
        B = np.zeros((m, m))
        for i in range(m):
            B[i, i] = np.sqrt(gen.chisquare(k - i))
        for i in range(m):
            for j in range(i):
                B[i, j] = gen.standard_normal()
        return B

    QK, M, W = [], [], []
    for _ in range(p):
        MQ = gen.standard_normal((m, m))
        QK.append(MQ @ bartlett(n).T)
        M.append(gen.standard_normal((m, m)))
        B = bartlett(n - m)
        W.append(B @ B.T)
    L = np.broadcast_to(np.linalg.cholesky(V0), (p, m, m))
    lam, g = np.sqrt(1 - 0.25), 0.5
    Y = L @ np.array(QK) @ np.swapaxes(L, -1, -2) / (0.7 * np.sqrt(n * n))
    Z = np.exp(Y - Y.max(axis=-1, keepdims=True))
    A = Z / Z.sum(axis=-1, keepdims=True) + np.eye(m) - 1.0 / m
    AL = A @ L
    cross = AL @ np.array(M) @ np.swapaxes(L, -1, -2)
    want = (lam * lam * V0 + lam * g / np.sqrt(n) * (cross + np.swapaxes(cross, -1, -2))
            + g * g / n * AL @ (np.array(M) @ np.swapaxes(np.array(M), -1, -2) + np.array(W))
            @ np.swapaxes(AL, -1, -2))
    np.testing.assert_allclose(ds.V.values[:, -1], want, rtol=1e-11, atol=1e-12)


def test_kernel_marks_a_non_finite_state_failed():
    Vh = np.broadcast_to(V0, (4, 1, 3, 3)).copy()
    Vh[2, 0, 1, 1] = np.nan
    rows = pcg64.states(block_generators(1, 4))
    failed, clipped = np.zeros(4, dtype=bool), np.zeros(4, dtype=np.int64)
    rk.attention_kernel(rows, np.array([0, 4]), Vh, 0.5, 1.0, 16, 16, np.ones((3, 3)),
                        np.full((3, 3), 1 / 3), 1e-8, failed, clipped,
                        np.empty((3, 1, 1, 1, 1)), False)
    assert list(failed) == [False, False, True, False] and not clipped.any()


# ---------------------------------------------------------------- threads

def _strip(ds):
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in ("wall_time_s", "created")}
    return ds


@pytest.mark.parametrize("model", [ShapedAttention(0.5, 0.7, mask="causal", heads=2),
                                   ShapedMLP(activation="tanh", a=0.8),
                                   ShapedBlock(0.5, 0.7)],
                         ids=["masked-h2", "mlp-tanh", "block"])
def test_one_and_two_threads_identical(monkeypatch, model):
    kw = dict(width=12, n_paths=700, seed=13, depth=3, sampler="reduced")
    one = sample(model, V0, threads=1, **kw)
    monkeypatch.setattr(fs, "REDUCED_CHUNK_BLOCKS", 1)
    two = sample(model, V0, threads=2, **kw)
    xr.testing.assert_identical(_strip(one)[["V", "status"]], _strip(two)[["V", "status"]])


# ---------------------------------------------------------------- law: old vs new

N_LAW, WIDTH, DEPTH, SEED_OLD, SEED_NEW = 20_000, 24, 4, 31, 32

#: name → (model, control changes, smallest p-values measured when written:
#: same law [seeds 32, 33] / control [seeds 32, 33])
CASES = {
    "block": (ShapedBlock(0.5, 0.7, heads=2), {"gamma": 0.575}, "0.034 0.13 / 4e-26 1e-24"),
    "mlp": (ShapedMLP(0.5, -1.0), {"width": 28}, "0.096 0.13 / 1e-13 2e-19"),
    "attention": (ShapedAttention(0.5, 0.7), {"gamma": 0.575}, "0.13 0.18 / 1e-16 9e-20"),
    "masked": (ShapedAttention(0.5, 0.7, mask="causal"), {"gamma": 0.575},
               "0.049 0.055 / 1e-17 2e-19"),
}


def _stats(V):
    out = []
    for a in range(3):
        for b in range(a, 3):
            out.append(V[:, a, b])
            if a < b:
                out.append(V[:, a, b] / np.sqrt(V[:, a, a] * V[:, b, b]))
    return out


def _pmin(V1, V2):
    ps = [scipy.stats.ks_2samp(x, y).pvalue for x, y in zip(_stats(V1), _stats(V2))]
    return min(ps), ALPHA / len(ps)


@functools.lru_cache(maxsize=None)
def _old(name):
    model = CASES[name][0]
    return ref.sample_final_V(model, V0, width=WIDTH, depth=DEPTH, n_paths=N_LAW, seed=SEED_OLD)


def _new(name, seed=SEED_NEW, **changes):
    model = CASES[name][0]
    width = changes.pop("width", WIDTH)
    model = model.replace(**changes) if changes else model
    ds = sample(model, V0, width=width, depth=DEPTH, n_paths=N_LAW, seed=seed,
                save_every=DEPTH)
    assert ds.attrs["n_dead"] == 0
    return ds.V.values[:, -1]


@pytest.mark.parametrize("name", list(CASES))
def test_new_sampler_has_the_old_law(name):
    old = _old(name)
    assert np.isfinite(old).all()
    pmin, threshold = _pmin(old, _new(name))
    assert pmin >= threshold, f"{name}: inline-stream sampler ≠ old sampler (p = {pmin:.3g})"


@pytest.mark.parametrize("name", list(CASES))
def test_law_control_is_rejected(name):
    pmin, threshold = _pmin(_old(name), _new(name, **CASES[name][1]))
    assert pmin < threshold / 10, f"{name} {CASES[name][1]}: control not rejected (p = {pmin:.3g})"
