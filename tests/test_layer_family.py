"""The generic test family: every registered sub-layer and composition is tested alike.

A sub-layer joins covsde by being registered: its model class in ``sde.models`` (limit
coefficients) and its finite class in ``finite.layers`` (``@register``). The statistical
family runs over tables of configurations, one test function for every layer:

* reduced ≡ literal in one layer (``test_finite_exact.ONE_LAYER``: KS on every V_ab and
  ρ_ab, Bonferroni) with a negative control (``test_finite_exact.CONTROLS``);
* one-layer finite moments against the limit diffusion (``test_finite_coefficients.DIFF``:
  z-scores of n Cov(V' − V) against Σ(V)) with a negative control;
* and, exactly, for compositions: their limit is derived from the parts (generators add,
  docs/theory.md §9).

This module makes that a rule: every registered type must appear in each table, so a new
layer cannot be registered without joining the family. (The drift of each layer is tested
with the variance-reduced estimators of ``test_finite_coefficients``.)
"""
import dataclasses

import numpy as np
import pytest

import finite.layers as fl
from sde import ShapedAttention, ShapedBlock, ShapedMLPResidual
from sde.limits import LimitCoefficients, compose
from sde.models import MODELS, Serial
from test_finite_coefficients import DIFF, _diffusion_controls
from test_finite_exact import CONTROLS, ONE_LAYER


def registered_types():
    """Every sub-layer type with a finite sampler, every named model, and Serial."""
    return set(fl._REGISTRY) | set(MODELS.values()) | {Serial}


def _types(models):
    return {type(m) for m in models}


def missing_from(table):
    """Names of registered types that have no configuration in ``table``.

    Types with a covariance SDE (``has_limit``) belong to the exactness and diffusion tables;
    finite-only types (the unshaped architectures, literal sampler) to
    ``test_unshaped.COVERED``, the types its tests exercise."""
    if table == "finite-only":
        from test_unshaped import COVERED

        want = {t for t in registered_types() if not getattr(t, "has_limit", True)}
        return {t.__name__ for t in want} - {t.__name__ for t in COVERED}
    covered = {
        "exact": _types(c[0] for c in ONE_LAYER.values()),
        "exact-control": _types(ONE_LAYER[name][0] for name, *_ in CONTROLS),
        "diffusion": _types(c[0] for c in DIFF.values()),
        "diffusion-control": _types(DIFF[name][0] for name, _ in _diffusion_controls()),
    }[table]
    want = {t for t in registered_types() if getattr(t, "has_limit", True)}
    return {t.__name__ for t in want} - {t.__name__ for t in covered}


TABLES = ["exact", "exact-control", "diffusion", "diffusion-control", "finite-only"]


@pytest.mark.parametrize("table", TABLES)
def test_every_registered_layer_is_in_the_family(table):
    missing = missing_from(table)
    assert not missing, f"registered but not in the {table} family: {sorted(missing)}"


def test_family_completeness_check_can_fail():
    """Negative control of the rule above: a newly registered type is reported missing."""
    @dataclasses.dataclass(frozen=True)
    class Unlisted(ShapedAttention):
        pass

    fl.register(Unlisted)(fl.FiniteShapedAttention)
    try:
        assert all("Unlisted" in missing_from(t) for t in TABLES[:4])
    finally:
        del fl._REGISTRY[Unlisted]
    assert not any("Unlisted" in missing_from(t) for t in TABLES)

    from finite.unshaped import LayerNorm

    @dataclasses.dataclass(frozen=True)
    class UnlistedNorm(LayerNorm):
        pass

    fl.register(UnlistedNorm)(fl.finite_class(LayerNorm()))
    try:
        assert "UnlistedNorm" in missing_from("finite-only")
    finally:
        del fl._REGISTRY[UnlistedNorm]


COMPOSITIONS = [
    ShapedBlock(0.5, 0.7, 0.3, -1.0, heads=2),
    Serial(ShapedMLPResidual(1.0, 1.0, -1.0), ShapedAttention(1.0, 0.3)),
    Serial(ShapedAttention(0.3, 0.5), ShapedAttention(0.6, 2.0), ShapedMLPResidual(0.4)),
]


@pytest.mark.parametrize("model", COMPOSITIONS, ids=lambda m: type(m).__name__)
def test_composition_limit_is_the_sum_of_its_parts(model, rng):
    """Drift and diffusion of a composition equal the sums over its sub-layers (§9), and
    its LimitCoefficients are the field-wise sums (amplitudes of attention noise in
    quadrature)."""
    from conftest import random_spd

    parts = model.sublayers()
    assert len(parts) >= 2
    V = random_spd(rng, 4)
    np.testing.assert_allclose(model.drift(V), sum(p.drift(V) for p in parts),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.diffusion(V), sum(p.diffusion(V) for p in parts),
                               rtol=1e-12, atol=1e-14)
    lim = model.limit()
    assert lim.a_lin == pytest.approx(sum(p.limit().a_lin for p in parts), rel=1e-15)
    assert lim.att_drift == pytest.approx(sum(p.limit().att_drift for p in parts), rel=1e-15)
    # negative control: dropping one part changes the drift
    assert not np.allclose(model.drift(V), sum(p.drift(V) for p in parts[1:]))


def test_block_is_bitwise_the_serial_composition():
    """ShapedBlock's limit is the composition of its attention and MLP sub-layers, exactly."""
    block = ShapedBlock(0.5, 0.7, 0.3, -1.0, heads=2)
    assert block.limit() == Serial(block.attention(), block.mlp()).limit()
    assert block.sublayers() == (block.attention(), block.mlp())


def test_compose_refuses_two_different_activation_drifts():
    from sde import CovsdeInputError

    a = LimitCoefficients(mlp_drift=1.0, nu=0.1)
    b = LimitCoefficients(mlp_drift=1.0, smooth=True, f3=-1.0)
    with pytest.raises(CovsdeInputError, match="different activations"):
        compose(a, b)
    assert compose(a, a).mlp_drift == 2.0


@pytest.mark.parametrize("bad", [np.ones(3), np.ones((2, 3)), "abc", [[1, 2], [3]]],
                         ids=["vector", "non-square", "string", "ragged"])
def test_model_methods_validate_V(bad):
    """drift/diffusion/noise_matrix of any model: one-line CovsdeInputError, no numba wall."""
    from sde import CovsdeInputError

    for model in (ShapedAttention(0.5, 1.0), COMPOSITIONS[1]):
        for method in (model.drift, model.diffusion, model.noise_matrix):
            with pytest.raises(CovsdeInputError, match="V must be"):
                method(bad)
