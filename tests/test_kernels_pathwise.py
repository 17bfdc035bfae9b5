"""Pathwise cross-check of the numba Euler–Maruyama kernel against sdeint (THEORY §4).

``sde._kernels.integrate_supplied`` is driven by supplied increments
``dW[p, s, 0] = G``, ``dW[p, s, 1] = G'`` (each entry ~ N(0, dt)). The same increments,
flattened row-major to ``(vec G, vec G')`` (length 2m²), drive ``sdeint.itoEuler`` on the
flattened m²-state with drift ``model.drift`` and diffusion ``model.noise_matrix(V)``
(m² × 2m², columns ordered ``(vec G, vec G')``). sdeint's ``dW`` has shape
``(len(tspan) − 1, number of Wiener processes)`` = ``(n_steps, 2m²)`` (its docstring says
``d``, the code uses the column count of G). Both are the same scheme on the same
increments, so the paths agree to round-off; a perturbed coefficient fed to sdeint must not.
"""
import numpy as np
import pytest
import sdeint

from conftest import random_spd
from sde import ShapedAttention, ShapedBlock, ShapedMLP, ShapedMLPResidual
from sde._kernels import integrate_supplied

M = 3
DT = 0.01
N_STEPS = 40
N_PATHS = 3
BOUND = 1e4
#: Round-off agreement: relative to max |V| along the path.
RTOL = 1e-10

MODELS = [
    ShapedAttention(0.7, 0.9),
    ShapedAttention(0.7, 0.9, heads=2),
    ShapedMLP(0.3, -1.2),
    ShapedMLP(activation="tanh", a=0.8),
    ShapedMLPResidual(0.6, 0.2, -0.9),
    ShapedBlock(0.5, 1.3, 0.1, -1.1),
    ShapedBlock(0.5, 1.3, 0.1, -1.1, heads=2),
]
IDS = ["attention", "attention-H2", "mlp-relu", "mlp-tanh", "mlp-res", "block", "block-H2"]

#: Negative controls: each model with one coefficient perturbed (fed to sdeint only).
PERTURBED = [
    ShapedAttention(0.7, 0.9 * 1.15),
    ShapedAttention(0.7, 0.9, heads=1),
    ShapedMLP(0.3, -1.2 * 1.15),
    ShapedMLP(activation="tanh", a=0.8 * 1.15),
    ShapedMLPResidual(0.6 * 1.1, 0.2, -0.9),
    ShapedBlock(0.5, 1.3 * 1.15, 0.1, -1.1),
    ShapedBlock(0.5, 1.3, 0.1, -1.1, heads=1),
]


def _increments(seed):
    rng = np.random.default_rng(seed)
    return np.sqrt(DT) * rng.standard_normal((N_PATHS, N_STEPS, 2, M, M))


def _kernel_paths(model, V0, dW):
    out_V = np.full((N_PATHS, N_STEPS + 1, M, M), np.nan)
    status = np.zeros(N_PATHS, dtype=np.int8)
    death = np.full(N_PATHS, np.inf)
    integrate_supplied(V0, model.coef(), DT, dW, BOUND, out_V, status, death)
    return out_V, status, death


def _sdeint_path(model, V0, dW_path):
    """sdeint.itoEuler on the flattened m²-state; dW_path (n_steps, 2, m, m)."""
    def f(y, t):
        return model.drift(y.reshape(M, M)).ravel()

    def G(y, t):
        return model.noise_matrix(y.reshape(M, M))

    tspan = np.arange(N_STEPS + 1) * DT
    dW_flat = dW_path.reshape(N_STEPS, 2 * M * M)  # row-major: (vec G, vec G')
    y = sdeint.itoEuler(f, G, V0.ravel(), tspan, dW=dW_flat)
    return y.reshape(N_STEPS + 1, M, M)


@pytest.fixture(scope="module")
def V0():
    return random_spd(np.random.default_rng(2024), M)


@pytest.mark.parametrize("k", range(len(MODELS)), ids=IDS)
def test_kernel_equals_sdeint_itoEuler(V0, k):
    model, wrong = MODELS[k], PERTURBED[k]
    dW = _increments(100 + k)
    out_V, status, death = _kernel_paths(model, V0, dW)
    assert np.all(status == 0), f"paths died (status {status}): choose milder parameters"
    assert np.all(np.isinf(death))
    max_err, min_wrong = 0.0, np.inf
    for p in range(N_PATHS):
        ref = _sdeint_path(model, V0, dW[p])
        scale = np.max(np.abs(ref))
        err = np.max(np.abs(out_V[p] - ref)) / scale
        max_err = max(max_err, err)
        bad = _sdeint_path(wrong, V0, dW[p])
        min_wrong = min(min_wrong, np.max(np.abs(out_V[p] - bad)) / scale)
        # the kernel keeps V exactly symmetric; sdeint's path is symmetric to round-off
        np.testing.assert_array_equal(out_V[p], np.swapaxes(out_V[p], -1, -2))
    assert max_err < RTOL, f"kernel vs sdeint relative error {max_err:.3e}"
    # negative control: a perturbed coefficient is 10⁴× above the round-off tolerance
    assert min_wrong > 1e4 * RTOL, f"perturbed model matched to {min_wrong:.3e}"


def test_increment_layout_matters(V0):
    """Negative control on the layout: swapping G and G' (or transposing G) changes the path."""
    model = MODELS[5]  # block, uses both G and G'
    dW = _increments(7)
    out_V, status, _ = _kernel_paths(model, V0, dW)
    assert status[0] == 0
    swapped = dW[0][:, ::-1]
    transposed = dW[0].copy()
    transposed[:, 1] = np.swapaxes(dW[0][:, 1], -1, -2)
    scale = np.max(np.abs(out_V[0]))
    for alt in (swapped, transposed):
        ref = _sdeint_path(model, V0, alt)
        assert np.max(np.abs(out_V[0] - ref)) / scale > 1e4 * RTOL
