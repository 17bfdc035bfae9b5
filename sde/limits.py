"""The limit coefficients of a sub-layer: one typed structure the numba kernels read by name.

A model's covariance SDE (docs/theory.md §3) is ``dV = b(V) dt + dM`` with

* drift ``b(V) = att_drift · b_att(V) + mlp_drift · b_act(V)``, where ``b_att`` is the unit
  shaped-attention drift (§3.1, the bracket without γ²/τ0²) and ``b_act`` the activation's
  drift (§3.2: the shaped-ReLU ν-drift, or the smooth-shaping f2/f3 drift);
* diffusion ``Σ(V) = a_lin Σ_lin(V) + (att_noise/m)² Σ_att(V)``.

:class:`LimitCoefficients` holds these numbers. It is a ``NamedTuple`` so that numba
compiles it as a typed record: the kernels write ``coef.a_lin``, never a positional slot.

Serial composition (§9): at leading order in 1/n the generators of sub-layers applied in
series add, so drifts and diffusion coefficients add (:func:`compose`). The attention noise
coefficient ``att_noise`` is an amplitude, so amplitudes add in quadrature.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .errors import CovsdeInputError


class LimitCoefficients(NamedTuple):
    """Coefficients of the limit SDE of one sub-layer or composition (docs/theory.md §3)."""

    #: multiplier of the unit attention drift: γ²/τ0² (0 without attention).
    att_drift: float = 0.0
    #: multiplier of the activation drift (1 for the Li–Nica–Roy MLP, γ² residual; 0: none).
    mlp_drift: float = 0.0
    #: the activation drift's form: False = shaped ReLU (ν), True = smooth shaping (f2, f3).
    smooth: bool = False
    #: (c₊ − c₋)²/(2π), the prefactor of ν(ρ) of the shaped ReLU.
    nu: float = 0.0
    #: f2²/(4a²) of the smooth shaping.
    f2: float = 0.0
    #: f3/(2a²) of the smooth shaping.
    f3: float = 0.0
    #: coefficient of Σ_lin in Σ(V).
    a_lin: float = 0.0
    #: attention noise amplitude γ²/(τ0 sqrt H); Σ_att's coefficient is (att_noise/m)².
    att_noise: float = 0.0

    @property
    def has_attention_noise(self) -> bool:
        return self.att_noise != 0.0

    def activation_part(self):
        """The fields that define the activation drift's form."""
        return (self.smooth, self.nu, self.f2, self.f3)


def typed(coef: LimitCoefficients) -> LimitCoefficients:
    """``coef`` with float fields as Python floats and ``smooth`` as a bool (one numba type)."""
    return LimitCoefficients(*(bool(v) if k == "smooth" else float(v)
                               for k, v in zip(LimitCoefficients._fields, coef)))


def compose(first: LimitCoefficients, second: LimitCoefficients) -> LimitCoefficients:
    """The limit of ``first`` then ``second`` applied in series: generators add (§9).

    Two activation drifts of different forms cannot share the kernel's one activation slot:
    that composition is refused with a clear error.
    """
    if first.mlp_drift != 0.0 and second.mlp_drift != 0.0:
        if first.activation_part() != second.activation_part():
            raise CovsdeInputError("cannot compose two MLP sub-layers with different "
                                   "activations: the kernels hold one activation drift")
    act = second if first.mlp_drift == 0.0 else first
    return LimitCoefficients(
        att_drift=first.att_drift + second.att_drift,
        mlp_drift=first.mlp_drift + second.mlp_drift,
        smooth=act.smooth, nu=act.nu, f2=act.f2, f3=act.f3,
        a_lin=first.a_lin + second.a_lin,
        att_noise=math.hypot(first.att_noise, second.att_noise),
    )
