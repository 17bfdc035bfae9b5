"""finite: the literal layers against explicit per-head loops, the exact initial input,
PSD-safe factors, random-matrix helpers, validation, reproducibility and dead-path
bookkeeping of :func:`finite.sample` (fast; the statistical exactness tests are in
test_finite_exact.py)."""
import math

import numpy as np
import pytest
import xarray as xr

import importlib
from conftest import random_spd
from finite import layers as fl
from finite import literal as lit
from finite import reduced as red
from finite import sample
from sde import (CovsdeInputError, ShapedAttention, ShapedBlock, ShapedMLP, ShapedMLPResidual,
                 equicorrelated)
from sde.schema import VOLATILE_ATTRS, validate_dataset

fs = importlib.import_module("finite.sample")  # the module (the package exports the function)

V0 = np.array([[1.0, 0.3, -0.2], [0.3, 0.8, 0.1], [-0.2, 0.1, 1.3]])


# ---------------------------------------------------------------- initial input

@pytest.mark.parametrize("m,width,heads", [(3, 3, 1), (3, 24, 1), (3, 24, 2), (4, 12, 3),
                                           (5, 40, 8), (8, 64, 4)])
def test_initial_X_reproduces_V0_and_block_grams(rng, m, width, heads):
    V = random_spd(rng, m)
    X0 = lit.initial_X(V, width, heads)
    assert X0.shape == (m, width)
    np.testing.assert_allclose(X0 @ X0.T / width, V, rtol=0, atol=1e-13)
    grams = lit.block_grams(X0[None], heads)[0]
    for h in range(heads):
        np.testing.assert_allclose(grams[h], V / heads, rtol=0, atol=1e-13)
    E = lit.spread_matrix(m, width, heads)
    np.testing.assert_allclose(E @ E.T, np.eye(m), atol=1e-15)


def test_spread_matrix_needs_room():
    with pytest.raises(ValueError):
        lit.spread_matrix(4, 12, 4)


# ---------------------------------------------------------------- literal layers vs loops

def _attention_loop(X, WQ, WK, WV, gamma, tau0, H, nk):
    """One path, heads one at a time, written from docs/theory.md §2.1 directly."""
    m, n = X.shape
    lam = math.sqrt(1 - gamma ** 2)
    heads_out = []
    for h in range(H):
        Q = X @ WQ[:, h * nk:(h + 1) * nk]
        K = X @ WK[:, h * nk:(h + 1) * nk]
        Y = Q @ K.T / n
        Z = Y / (tau0 * math.sqrt(n * nk))
        S = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
        A = np.eye(m) + S - np.ones((m, m)) / m
        heads_out.append(A @ X @ WV[:, h * (n // H):(h + 1) * (n // H)])
    return lam * X + gamma * np.concatenate(heads_out, axis=1) / math.sqrt(n)


@pytest.mark.parametrize("H,nk", [(1, 5), (2, 3), (3, 7)])
def test_attention_layer_matches_loop(rng, H, nk):
    m, n, p = 3, 12, 4
    X = rng.standard_normal((p, m, n))
    w = [rng.standard_normal((p,) + s) for s in lit.attention_shapes(n, H, nk)]
    got = lit.attention_layer(X, w, 0.6, 0.8, H, nk)
    for i in range(p):
        want = _attention_loop(X[i], w[0][i], w[1][i], w[2][i], 0.6, 0.8, H, nk)
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12)


def test_mlp_layers_match_formulas(rng):
    m, n, p = 3, 10, 3
    X = rng.standard_normal((p, m, n))
    phi, c = ShapedMLPResidual(0.6, 0.5, -1.0).activation_at(n)
    sp, sm = 1 + 0.5 / math.sqrt(n), 1 - 1 / math.sqrt(n)
    w = [rng.standard_normal((p,) + s) for s in lit.mlp_shapes(n)]
    got = lit.mlp_res_layer(X, w, 0.6, phi, c)
    for i in range(p):
        Z = X[i] @ w[0][i] / math.sqrt(n)
        S = np.where(Z > 0, sp * Z, sm * Z)
        want = 0.8 * X[i] + 0.6 * math.sqrt(c / n) * S @ w[1][i]
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12)
    assert c == pytest.approx(2 / (sp ** 2 + sm ** 2))
    (W,) = [rng.standard_normal((p,) + s) for s in lit.lnr_shapes(n)]
    got = lit.lnr_layer(X, [W], phi, c)
    for i in range(p):
        Z = X[i] @ W[i] / math.sqrt(n)
        np.testing.assert_allclose(got[i], math.sqrt(c) * np.where(Z > 0, sp * Z, sm * Z),
                                   rtol=1e-12)


def test_draw_weights_independent_of_subchunks():
    shapes = lit.attention_shapes(6, 2, 2)
    g1 = np.random.Generator(np.random.PCG64(7))
    whole = lit.draw_weights(g1, 5, shapes)
    g2 = np.random.Generator(np.random.PCG64(7))
    parts = [lit.draw_weights(g2, q, shapes) for q in (2, 1, 2)]
    for k in range(len(shapes)):
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))


# ---------------------------------------------------------------- PSD-safe factors

def test_psd_factor_cases(rng):
    m = 4
    pd = random_spd(rng, m)
    G = rng.standard_normal((m, 2))
    singular = G @ G.T                               # rank 2, PSD
    q = np.linalg.qr(rng.standard_normal((m, m)))[0]
    tiny_neg = (q * np.array([-1e-13, 0.5, 1.0, 2.0])) @ q.T
    indefinite = (q * np.array([-0.1, 0.5, 1.0, 2.0])) @ q.T
    nan = pd.copy()
    nan[0, 1] = np.nan
    batch = np.stack([pd, singular, tiny_neg, indefinite, nan])
    L, flag = red.psd_factor(batch)
    assert flag[0] == red.FACTOR_OK
    np.testing.assert_allclose(L[0], np.linalg.cholesky(pd), atol=1e-13)
    assert flag[1] in (red.FACTOR_OK, red.FACTOR_CLIPPED)
    np.testing.assert_allclose(L[1] @ L[1].T, singular, atol=1e-10)
    assert flag[2] == red.FACTOR_CLIPPED
    np.testing.assert_allclose(L[2] @ L[2].T, tiny_neg, atol=1e-12)
    assert list(flag[3:]) == [red.FACTOR_FAILED, red.FACTOR_FAILED]
    # per-matrix decision: the same matrix gets the same factor in any batch
    L2, flag2 = red.psd_factor(batch[[2, 0]])
    np.testing.assert_array_equal(L2[0], L[2])
    np.testing.assert_array_equal(L2[1], L[0])


# ---------------------------------------------------------------- random matrices

@pytest.mark.parametrize("k", [2, 5, 11])
def test_wishart_first_two_moments(k):
    """Mean k·I and Var(W_ab) = k(1 + δ_ab) (a ≠ b: k), z-tested at 10⁵ draws."""
    m, N = 4, 100_000
    W = red.wishart(np.random.default_rng(3), (N,), m, k)
    mean = W.mean(axis=0)
    se = np.sqrt(k * (1 + np.eye(m)) / N)
    assert np.all(np.abs(mean - k * np.eye(m)) < 5 * se)
    var = W.var(axis=0)
    # sd of a sample variance ≈ var · sqrt(2/N) · sqrt(kurtosis factor ≤ 4) for these laws
    assert np.all(np.abs(var - k * (1 + np.eye(m))) < 5 * 2 * k * (1 + np.eye(m)) * np.sqrt(4 / N))


@pytest.mark.parametrize("nk", [2, 3, 9])
def test_query_key_product_moments(nk):
    """G_Q G_Kᵀ has E = 0, E[(G_Q G_Kᵀ)_ab²] = nk and E[x_ab x_ac] = 0 (b ≠ c)."""
    m, N = 3, 100_000
    P = red.query_key_product(np.random.default_rng(4), (N,), m, nk)
    assert np.all(np.abs(P.mean(axis=0)) < 5 * math.sqrt(nk / N))
    second = (P ** 2).mean(axis=0)
    # Var(x²) = E x⁴ − nk² = (3nk² + 6nk) − nk² for a sum of nk products of normals
    se = math.sqrt((2 * nk ** 2 + 6 * nk) / N)
    assert np.all(np.abs(second - nk) < 5 * se)
    # row products P_ab P_ac share G_Q's row a: E = 0
    cross = (P[:, 0, 0] * P[:, 0, 1]).mean()
    assert abs(cross) < 5 * math.sqrt((nk ** 2 + 2 * nk) / N)


# ---------------------------------------------------------------- sample(): dataset

def _strip(ds):
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in VOLATILE_ATTRS}
    return ds


ARCH_MODELS = [ShapedAttention(0.5, 0.7, heads=2), ShapedBlock(0.5, 0.7, heads=2),
               ShapedMLP(0.5, -1.0), ShapedMLP(activation="tanh", a=0.8),
               ShapedMLPResidual(0.5)]


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
@pytest.mark.parametrize("model", ARCH_MODELS, ids=lambda m: f"{m.arch}")
def test_sample_dataset_layout(model, sampler):
    ds = sample(model, V0, width=12, n_paths=5, seed=3, depth=7, save_every=3, sampler=sampler)
    validate_dataset(ds)
    assert ds.V.shape == (5, 4, 3, 3)
    assert list(ds.depth.values) == [0, 3, 6, 7]
    np.testing.assert_allclose(ds.time.values, np.array([0, 3, 6, 7]) / 12, rtol=1e-15)
    np.testing.assert_allclose(ds.V.values[:, 0], np.broadcast_to(V0, (5, 3, 3)), atol=1e-13)
    assert np.all(np.isfinite(ds.V.values)) and not ds.exploded.any()
    a = ds.attrs
    assert a["source"] == f"finite-{sampler}" and a["sampler"] == sampler
    assert a["arch"] == model.arch and a["width"] == 12 and a["seed"] == 3
    assert a["dt"] == pytest.approx(1 / 12) and a["t_end"] == pytest.approx(7 / 12)
    for k, v in model.params().items():
        assert a[k] == v
    if model.arch in ("attention", "block"):
        assert a["key_width"] == 6
    else:
        assert "key_width" not in a
    V = ds.V.values[:, -1]
    assert np.allclose(V, np.swapaxes(V, -1, -2))
    assert np.all(np.linalg.eigvalsh(V) > 0)


def test_t_end_rounds_to_depth():
    from finite.sample import RealisedTimeWarning

    with pytest.warns(RealisedTimeWarning, match="sampled depth 5, i.e. t_end = 0.3125"):
        ds = sample(ShapedAttention(0.5, 0.7), V0, width=16, n_paths=3, seed=0, t_end=0.3)
    assert int(ds.depth.values[-1]) == 5          # round(0.3·16) = round(4.8)
    assert ds.attrs["t_end"] == pytest.approx(5 / 16)
    assert ds.attrs["t_end_requested"] == pytest.approx(0.3)
    # a depth-0 "run" is refused (it would be a one-time dataset)
    with pytest.raises(CovsdeInputError, match="depth must be an integer >= 1"):
        sample(ShapedAttention(0.5, 0.7), V0, width=16, n_paths=3, seed=0, depth=0)
    with pytest.raises(CovsdeInputError, match="rounds to depth 0"):
        sample(ShapedAttention(0.5, 0.7), V0, width=64, n_paths=3, seed=0, t_end=0.001)


@pytest.mark.parametrize("kwargs,word", [
    (dict(width=2), "width/heads"),
    (dict(width=13), "heads"),
    (dict(width=4), "width/heads"),
    (dict(key_width=0), "key_width"),
    (dict(depth=-1), "depth"),
    (dict(depth=None), "exactly one"),
    (dict(t_end=0.5), "exactly one"),
    (dict(n_paths=0), "n_paths"),
    (dict(seed=-2), "seed"),
    (dict(sampler="exact"), "sampler"),
    (dict(width=4096, depth=4096, n_paths=1000, sampler="literal"), "--sampler reduced"),
])
def test_sample_bad_input(kwargs, word):
    base = dict(width=12, n_paths=4, seed=0, depth=2)
    base.update(kwargs)
    with pytest.raises(CovsdeInputError) as exc:
        sample(ShapedAttention(0.5, 0.7, heads=2), V0, **base)
    msg = str(exc.value)
    assert word in msg and "\n" not in msg


def test_key_width_only_with_attention():
    with pytest.raises(CovsdeInputError, match="key_width"):
        sample(ShapedMLP(), V0, width=12, n_paths=2, seed=0, depth=1, key_width=3)
    with pytest.raises(CovsdeInputError, match="t_end"):
        sample(ShapedMLP(), V0, width=12, n_paths=2, seed=0, t_end=-1.0)


# ---------------------------------------------------------------- reproducibility

@pytest.mark.parametrize("sampler", ["literal", "reduced"])
@pytest.mark.parametrize("model", [ShapedBlock(0.5, 0.7, heads=2), ShapedMLP(0.5, -1.0)],
                         ids=lambda m: m.arch)
def test_same_seed_identical_any_chunking_and_threads(monkeypatch, model, sampler):
    kw = dict(width=12, n_paths=600, seed=11, depth=4, sampler=sampler, threads=1)
    ref = sample(model, V0, **kw)
    again = sample(model, V0, **kw)
    xr.testing.assert_identical(_strip(ref), _strip(again))
    assert ref.attrs["wall_time_s"] >= 0
    # other chunking in memory and two worker threads: identical
    monkeypatch.setattr(fs, "REDUCED_CHUNK_BLOCKS", 1)
    monkeypatch.setattr(fs, "LITERAL_CHUNK_BYTES", 3 * 8 * 12 * 12 * 5)  # a few paths
    other = sample(model, V0, **{**kw, "threads": 2})
    xr.testing.assert_identical(_strip(ref), _strip(other))
    different = sample(model, V0, **{**kw, "seed": 12})
    assert not np.array_equal(different.V.values, ref.V.values)
    # the first RNG block does not depend on how many paths follow it
    fewer = sample(model, V0, **{**kw, "n_paths": 256})
    np.testing.assert_array_equal(fewer.V.values, ref.V.values[:256])


# ---------------------------------------------------------------- dead paths

def test_factorisation_failure_marks_path_dead(monkeypatch):
    """A failed factorisation (reported for path 2 by the 3rd layer) gives status 3, death
    time 3/n, NaN from that layer on; other paths are untouched. The kernel's own flag is
    checked in tests/test_finite_floor.py (a non-finite state fails)."""
    calls = {"n": 0}
    real = fl.FiniteShapedAttention.reduced

    def failing(self, Vh, gens, slices, alive, layer=0, **kw):
        Vh, failed, clipped = real(self, Vh, gens, slices, alive, layer, **kw)
        calls["n"] += 1
        if calls["n"] == 3:
            failed = failed.copy()
            failed[2] = True
        return Vh, failed, clipped

    model = ShapedAttention(0.5, 0.7)
    ref = sample(model, V0, width=12, n_paths=4, seed=5, depth=5, save_every=1, threads=1)
    monkeypatch.setattr(fl.FiniteShapedAttention, "reduced", failing)
    ds = sample(model, V0, width=12, n_paths=4, seed=5, depth=5, save_every=1, threads=1)
    assert list(ds.status.values) == [0, 0, 3, 0]
    assert ds.death_time.values[2] == pytest.approx(3 / 12)
    assert np.isinf(ds.death_time.values[[0, 1, 3]]).all()
    assert np.isnan(ds.V.values[2, 3:]).all() and np.isfinite(ds.V.values[2, :3]).all()
    keep = [0, 1, 3]
    np.testing.assert_array_equal(ds.V.values[keep], ref.V.values[keep])
    assert ds.attrs["n_factor_failed"] == 1 and ds.attrs["n_dead"] == 1


def test_equicorrelated_input_and_many_tokens():
    V = equicorrelated(8, 0.2)
    ds = sample(ShapedBlock(0.5, 1.0, heads=2), V, width=16, n_paths=3, seed=1, depth=3)
    assert ds.V.shape == (3, 4, 8, 8) and not ds.exploded.any()


def test_hidden_gram_relu_kernel_matches_numpy(rng):
    """The fused ReLU hidden Gram equals phi(L G) phi(L G)ᵀ/n with G drawn from an equal
    Generator in the documented order (path by path, column by column: G[k, :, j] is m
    consecutive normals), leaves the Generator where that draw would (the next draws agree),
    and the numpy form (any other activation) draws the same normals."""
    m, n, p = 4, 300, 7
    L = np.linalg.cholesky(np.stack([random_spd(rng, m) for _ in range(p)]))
    for act in (ShapedMLP(0.4, -1.0).shaped_activation,
                ShapedMLP(activation="tanh", a=0.7).shaped_activation):
        phi = act.at_width(n)[0]
        g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
        K = red.hidden_gram(g1, L, phi, n, slopes=act.slopes(n))
        G = np.swapaxes(g2.standard_normal((p, n, m)), -1, -2)
        S = phi(L @ G)
        np.testing.assert_allclose(K, S @ np.swapaxes(S, -1, -2) / n, rtol=1e-12, atol=1e-13)
        np.testing.assert_array_equal(g1.standard_normal(5), g2.standard_normal(5))
    # a factor that is not lower triangular (the clipped eigen-factor) uses every entry
    Q = np.linalg.qr(rng.standard_normal((m, m)))[0]
    Lfull = (L @ Q)[None, 0]
    relu = ShapedMLP(0.4, -1.0).shaped_activation
    K = red.hidden_gram(np.random.default_rng(3), Lfull, relu.at_width(n)[0], n,
                        slopes=relu.slopes(n))
    S = relu.at_width(n)[0](Lfull @ np.swapaxes(
        np.random.default_rng(3).standard_normal((1, n, m)), -1, -2))
    np.testing.assert_allclose(K, S @ np.swapaxes(S, -1, -2) / n, rtol=1e-12, atol=1e-13)
    assert ShapedMLP(0.4, -1.0).shaped_activation.slopes(16) == (1.1, 0.75)
    assert ShapedMLP(activation="tanh").shaped_activation.slopes(16) is None
