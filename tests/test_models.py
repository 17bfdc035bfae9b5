"""Model objects: validation, and the formulas against independent dense numpy versions."""
import math

import numpy as np
import pytest

from conftest import random_spd
from sde import (CovsdeInputError, ShapedAttention, ShapedBlock, ShapedMLP, ShapedMLPResidual,
                 model_from_params)

ALL = [ShapedAttention(0.7, 0.9, heads=2), ShapedMLP(0.3, -1.2), ShapedMLP(activation="tanh", a=0.8),
       ShapedMLPResidual(0.6, 0.2, -0.9), ShapedBlock(0.5, 1.3, 0.1, -1.1, heads=3)]


def _att_drift_numpy(V, gamma, tau0):
    m = V.shape[0]
    P = np.eye(m) - np.ones((m, m)) / m
    S = P @ V @ P
    v = np.diag(V)
    st = np.diag(S) - np.trace(S) / m
    Vs = V @ st
    return gamma ** 2 / tau0 ** 2 * (np.sum(S * V) * V / m ** 2
                                     + (np.outer(v, Vs) + np.outer(Vs, v)) / (2 * m))


def _relu_drift_numpy(V, cp, cm):
    d = np.sqrt(np.diag(V))
    rho = np.clip(V / np.outer(d, d), -1, 1)
    nu = (cp - cm) ** 2 / (2 * np.pi) * (np.sqrt(1 - rho ** 2) - rho * np.arccos(rho))
    return nu * np.outer(d, d)


def _sigma_numpy(V, a_lin, k_att):
    m = V.shape[0]
    P = np.eye(m) - np.ones((m, m)) / m
    Vt = V @ P @ V @ P @ V
    lin = np.einsum("ac,bd->abcd", V, V) + np.einsum("ad,bc->abcd", V, V)
    att = (np.einsum("ac,bd->abcd", V, Vt) + np.einsum("ad,bc->abcd", V, Vt)
           + np.einsum("bc,ad->abcd", V, Vt) + np.einsum("bd,ac->abcd", V, Vt))
    return a_lin * lin + k_att * att


@pytest.mark.parametrize("m", [2, 3, 5])
def test_drift_matches_numpy_formulas(rng, m):
    V = random_spd(rng, m)
    g, t0, cp, cm = 0.5, 1.3, 0.1, -1.1
    att = _att_drift_numpy(V, g, t0)
    mlp = _relu_drift_numpy(V, cp, cm)
    np.testing.assert_allclose(ShapedAttention(g, t0).drift(V), att, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ShapedMLP(cp, cm).drift(V), mlp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ShapedMLPResidual(g, cp, cm).drift(V), g ** 2 * mlp, rtol=1e-12,
                               atol=1e-14)
    np.testing.assert_allclose(ShapedBlock(g, t0, cp, cm, heads=2).drift(V), att + g ** 2 * mlp,
                               rtol=1e-12, atol=1e-14)
    a = 0.8
    f2, f3 = 0.0, -2.0
    tanh = (f2 ** 2 / (4 * a ** 2) * (np.outer(np.diag(V), np.diag(V)) + V * (2 * V - 3))
            + f3 / (2 * a ** 2) * V * (np.diag(V)[:, None] + np.diag(V)[None, :] - 2))
    np.testing.assert_allclose(ShapedMLP(activation="tanh", a=a).drift(V), tanh, rtol=1e-12)


def test_diffusion_matches_numpy_formulas(rng):
    m = 4
    V = random_spd(rng, m)
    g, t0, H = 0.7, 0.6, 2
    a_lins = {"attention": g ** 2 * (2 - g ** 2), "mlp": 1.0, "mlp-res": 2 * g ** 2,
              "block": g ** 2 * (2 - g ** 2) + 2 * g ** 2}
    k = g ** 4 / (H * m ** 2 * t0 ** 2)
    cases = [(ShapedAttention(g, t0, H), a_lins["attention"], k),
             (ShapedMLP(), 1.0, 0.0),
             (ShapedMLPResidual(g), a_lins["mlp-res"], 0.0),
             (ShapedBlock(g, t0, heads=H), a_lins["block"], k)]
    for model, a_lin, k_att in cases:
        assert model.a_lin == pytest.approx(a_lin, rel=1e-14)
        assert model.attention_noise(m) == pytest.approx(k_att, rel=1e-14)
        np.testing.assert_allclose(model.diffusion(V), _sigma_numpy(V, a_lin, k_att), rtol=1e-12)


def test_noise_matrix_reproduces_dense_diffusion(rng):
    """B Bᵀ of the m²×2m² noise map equals the dense Σ (exact linear algebra, no sampling)."""
    m = 3
    V = random_spd(rng, m)
    for model in ALL:
        B = model.noise_matrix(V)
        np.testing.assert_allclose(B @ B.T, model.diffusion(V).reshape(m * m, m * m),
                                   rtol=1e-10, atol=1e-12)


def test_noise_matrix_detects_wrong_tau0(rng):
    """Negative control for the identity above: τ0 off by 15 % breaks it."""
    m = 3
    V = random_spd(rng, m)
    B = ShapedAttention(1.0, 0.3 * 1.15).noise_matrix(V)
    sigma = ShapedAttention(1.0, 0.3).diffusion(V).reshape(m * m, m * m)
    assert np.max(np.abs(B @ B.T - sigma)) > 1e-3 * np.max(np.abs(sigma))


@pytest.mark.parametrize("model", ALL, ids=lambda m: m.arch)
def test_params_roundtrip(model):
    assert model_from_params(model.params()) == model


@pytest.mark.parametrize("bad, match", [
    (lambda: ShapedAttention(0.0, 1.0), "gamma"),
    (lambda: ShapedAttention(1.1, 1.0), "gamma"),
    (lambda: ShapedAttention(0.5, 0.0), "tau0"),
    (lambda: ShapedAttention(0.5, -1.0), "tau0"),
    (lambda: ShapedAttention(0.5, 1.0, heads=0), "heads"),
    (lambda: ShapedAttention(0.5, 1.0, heads=1.5), "heads"),
    (lambda: ShapedMLP(activation="gelu"), "activation"),
    (lambda: ShapedMLP(activation="tanh", a=0.0), "a must"),
    (lambda: ShapedMLPResidual(0.5, c_plus=math.nan), "c_plus"),
    (lambda: ShapedBlock(0.5, 1.0, c_minus=math.inf), "c_minus"),
])
def test_bad_parameters_are_refused(bad, match):
    with pytest.raises(CovsdeInputError, match=match):
        bad()


def test_models_are_frozen():
    m = ShapedAttention(0.5, 1.0)
    with pytest.raises(Exception):
        m.gamma = 0.3
    assert m.replace(gamma=0.3).gamma == 0.3
