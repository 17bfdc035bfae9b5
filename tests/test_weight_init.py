"""Value / query / key initialisations of standard attention (docs/theory.md §2.4e).

* identity values (``W^V/√n = I``): the literal layer maps V to exactly ``A V Aᵀ`` (per head
  block ``A_h V_h A_hᵀ``), layer by layer, with A the attention matrix the layer used; the
  same for Haar orthogonal values with one head. A Gaussian-valued layer does not (control).
* E-SPA with identity values is deterministic: every path of both samplers walks the target
  schedule to round-off.
* the reduced sampler with identity values has the literal law (two-sample KS at depth 2);
  the reduced Gaussian-valued sampler is rejected by the same test (control).
* a fixed value matrix from a .npy file is applied as ``A_h X M_h``; bad inits are refused with
  one line naming the parameter (CLI: exit 2, no file).
"""
import numpy as np
import pytest
import scipy.stats

from finite import layers, literal as lit, sample, spa
from finite.unshaped import AttentionOnly, SoftmaxAttention
from sde import CovsdeInputError

ALPHA = 1e-3


def _bound(spec, n, m, depth=4):
    (b,) = layers.bind(spec, n, spec.heads, n // spec.heads, depth, seed=0)
    b.prepare(m)
    return b


@pytest.mark.parametrize("value_init,heads", [("identity", 1), ("identity", 2),
                                              ("orthogonal", 1)])
def test_identity_values_give_A_V_At_layer_by_layer(rng, value_init, heads):
    m, n, p = 5, 24, 6
    b = _bound(SoftmaxAttention(heads=heads, value_init=value_init), n, m)
    X = rng.standard_normal((p, m, n))
    for layer in range(4):
        W = lit.draw_weights(rng, p, b.literal_shapes())
        A = b.attention_matrix(X, W, layer)
        Vh = lit.block_grams(X, heads)
        X = b.literal(X, W, layer)
        np.testing.assert_allclose(lit.block_grams(X, heads),
                                   A @ Vh @ np.swapaxes(A, -1, -2), rtol=1e-11, atol=1e-12)
    # control: Gaussian values do not map V to A V Aᵀ
    g = _bound(SoftmaxAttention(heads=heads), n, m)
    W = lit.draw_weights(rng, p, g.literal_shapes())
    A, V = g.attention_matrix(X, W, 0), lit.block_grams(X, heads)
    dev = np.abs(lit.block_grams(g.literal(X, W), heads) - A @ V @ np.swapaxes(A, -1, -2))
    assert dev.max() > 1e-2


@pytest.mark.parametrize("sampler", ["literal", "reduced"])
def test_espa_identity_values_walk_the_schedule_exactly(sampler):
    m, depth = 6, 5
    ds = sample(AttentionOnly(attention="e-spa", value_init="identity", spa_final=0.3),
                np.eye(m), width=16, depth=depth, n_paths=4, seed=3, sampler=sampler,
                progress=False)
    target = spa.kernel_schedule("e-spa", 0.3, m, depth)
    np.testing.assert_allclose(ds.V.values, np.broadcast_to(target, ds.V.shape), atol=1e-12)
    assert ds.attrs["value_init"] == "identity"


def test_reduced_identity_values_match_literal():
    m, n, depth, paths = 3, 16, 2, 1500
    V0 = np.eye(m)

    def stat(ds):       # the last token's squared norm
        return ds.V.values[:, -1, -1, -1]

    lit_ds = sample(AttentionOnly(value_init="identity", mask="causal"), V0, width=n,
                    depth=depth, n_paths=paths, seed=11, sampler="literal", progress=False)
    red_ds = sample(AttentionOnly(value_init="identity", mask="causal"), V0, width=n,
                    depth=depth, n_paths=paths, seed=12, sampler="reduced", progress=False)
    assert scipy.stats.ks_2samp(stat(lit_ds), stat(red_ds)).pvalue > ALPHA
    ctrl = sample(AttentionOnly(mask="causal"), V0, width=n, depth=depth, n_paths=paths,
                  seed=13, sampler="reduced", progress=False)
    assert scipy.stats.ks_2samp(stat(lit_ds), stat(ctrl)).pvalue < ALPHA


def test_value_matrix_from_file(tmp_path, rng):
    m, n, p, H = 4, 12, 3, 2
    M = rng.standard_normal((n, n))
    path = tmp_path / "wv.npy"
    np.save(path, M)
    b = _bound(SoftmaxAttention(heads=H, value_init=str(path)), n, m)
    assert [s for s in b.literal_shapes()] == [(n, n), (n, n)]     # W^Q, W^K only
    assert not b.has_reduced and not b.rotation_invariant
    X = rng.standard_normal((p, m, n))
    W = lit.draw_weights(rng, p, b.literal_shapes())
    A = b.attention_matrix(X, W, 0)
    out = b.literal(X, W)
    bs = n // H
    for h in range(H):
        np.testing.assert_allclose(out[:, :, h * bs:(h + 1) * bs],
                                   A[:, h] @ X @ M[:, h * bs:(h + 1) * bs], rtol=1e-12)
    ds = sample(AttentionOnly(value_init=str(path), heads=H), np.eye(m), width=n, depth=2,
                n_paths=3, seed=1, progress=False)
    assert ds.attrs["sampler"] == "literal" and ds.attrs["initial_x"] == "haar"
    assert len(ds.attrs["value_init_sha256"]) == 16


def test_bad_inits(tmp_path):
    with pytest.raises(CovsdeInputError, match="value_init must be one of"):
        AttentionOnly(value_init="ones")
    with pytest.raises(CovsdeInputError, match="query_init must be one of gaussian"):
        AttentionOnly(query_init="identity")
    with pytest.raises(CovsdeInputError, match="no such file"):
        AttentionOnly(key_init=str(tmp_path / "missing.npy"))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((3, 3)))
    with pytest.raises(CovsdeInputError, match="does not apply to attention e-spa"):
        AttentionOnly(attention="e-spa", query_init=str(bad))
    with pytest.raises(CovsdeInputError, match="value_init: .* must hold a real 8 x 8"):
        sample(AttentionOnly(value_init=str(bad)), np.eye(3), width=8, depth=1, n_paths=1,
               seed=0)
    with pytest.raises(CovsdeInputError, match="initial_x must be one of haar, aligned"):
        sample(AttentionOnly(), np.eye(3), width=8, depth=1, n_paths=1, seed=0,
               initial_x="random")


def test_cli_value_init(tmp_path, capsys):
    from compare.cli import main
    from sde.io import read_dataset

    base = ["finite", "--arch", "attention-only", "--tokens", "4", "--rho0", "0", "--width",
            "16", "--depth", "2", "--paths", "3", "--seed", "1"]
    out = tmp_path / "id.nc"
    assert main(base + ["--value-init", "identity", "--initial-x", "haar",
                        "--out", str(out)]) == 0
    ds = read_dataset(str(out))
    assert ds.attrs["value_init"] == "identity" and ds.attrs["initial_x"] == "haar"
    capsys.readouterr()
    rc = main(base + ["--value-init", "zeros", "--out", str(tmp_path / "no.nc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--value-init" in err[0], err
    assert not (tmp_path / "no.nc").exists()
