"""Pathwise cross-check of the numba Euler–Maruyama kernel against sdeint (docs/theory.md §4).

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
    integrate_supplied(V0, model.limit(), DT, dW, BOUND, out_V, status, death)
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


def _increments_from_generator(gen, n_paths, n_steps, dt, has_att):
    """Replay the drawing kernel's documented order as supplied increments.

    Per step: the m(m+1)/2 entries of Z (row-major upper triangle, diagonal first; diagonal
    N(0, 2), off-diagonal N(0, 1)), then the m² entries of G' row-major when the model has
    attention; all times sqrt(dt). Z = (G + Gᵀ)/sqrt 2 with G upper triangular:
    G_aa = Z_aa / sqrt 2, G_ab = sqrt 2 Z_ab (a < b).
    """
    sq = np.sqrt(dt)
    dW = np.zeros((n_paths, n_steps, 2, M, M))
    for p in range(n_paths):
        for s in range(n_steps):
            for a in range(M):
                dW[p, s, 0, a, a] = sq * gen.standard_normal()  # Z_aa = sqrt(2 dt) g
                for b in range(a + 1, M):
                    dW[p, s, 0, a, b] = np.sqrt(2.0) * sq * gen.standard_normal()
            if has_att:
                for a in range(M):
                    for b in range(M):
                        dW[p, s, 1, a, b] = sq * gen.standard_normal()
    return dW


@pytest.mark.parametrize("k", [0, 1, 2, 6], ids=[IDS[i] for i in (0, 1, 2, 6)])
def test_simulate_equals_supplied_kernel(V0, k):
    """``sde.simulate`` (drawing kernel, RNG block 0 of the seed) = ``integrate_supplied`` fed
    the same normals in the documented order; saved every step. Checks that both kernels
    share the step and that the draw order/scaling is as documented."""
    from sde import simulate
    from sde.simulate import block_generators

    model = MODELS[k]
    n_paths, seed = 4, 99
    ds = simulate(model, V0, t_end=N_STEPS * DT, dt=DT, n_paths=n_paths, seed=seed,
                  save_every=1)
    assert np.all(ds["status"].values == 0)
    gen = block_generators(seed, n_paths)[0]
    has_att = model.attention_noise(M) != 0.0
    dW = _increments_from_generator(gen, n_paths, N_STEPS, DT, has_att)
    out_V = np.full((n_paths, N_STEPS + 1, M, M), np.nan)
    status = np.zeros(n_paths, dtype=np.int8)
    integrate_supplied(V0, model.limit(), DT, dW, BOUND, out_V, status, np.full(n_paths, np.inf))
    V = ds["V"].values
    assert V.shape == out_V.shape
    err = np.max(np.abs(V - out_V)) / np.max(np.abs(out_V))
    assert err < RTOL, f"simulate vs supplied replay: {err:.2e}"
    # negative control: another seed's stream does not match the replay
    other = simulate(model, V0, t_end=N_STEPS * DT, dt=DT, n_paths=n_paths, seed=seed + 1,
                     save_every=1)["V"].values
    assert np.max(np.abs(other - out_V)) / np.max(np.abs(out_V)) > 1e4 * RTOL


def test_sdeint_dW_convention():
    """sdeint.itoEuler's ``dW`` is (n_steps, number of Wiener processes), not (n_steps, d):
    with f = 0 and a constant d × k matrix B, y_N = y_0 + Σ_s B dW[s]."""
    rng = np.random.default_rng(3)
    d, k, n = 2, 5, 7
    B = rng.standard_normal((d, k))
    dW = rng.standard_normal((n, k))
    y = sdeint.itoEuler(lambda y, t: np.zeros(d), lambda y, t: B, np.ones(d),
                        np.linspace(0.0, 1.0, n + 1), dW=dW)
    assert y.shape == (n + 1, d)
    np.testing.assert_allclose(y[-1], 1.0 + B @ dW.sum(axis=0), rtol=1e-13)
