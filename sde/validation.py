"""Parameter checks shared by the model objects: each raises a one-line
:class:`sde.errors.CovsdeInputError` naming the parameter and its constraint."""
import math
import numbers

from .errors import CovsdeInputError


def is_real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_gamma(gamma):
    if not is_real(gamma) or not (0.0 < gamma <= 1.0):
        raise CovsdeInputError(f"gamma must be in (0, 1], got {gamma!r}", "gamma")


def check_tau0(tau0):
    if not is_real(tau0) or not (tau0 > 0.0) or not math.isfinite(tau0):
        raise CovsdeInputError(f"tau0 must be a finite number > 0, got {tau0!r}", "tau0")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise CovsdeInputError(f"{name} must be an integer >= 1, got {value!r}", name)


def check_finite_real(name, value):
    if not is_real(value) or not math.isfinite(value):
        raise CovsdeInputError(f"{name} must be a finite real number, got {value!r}", name)


def check_positive_finite(name, value):
    if not is_real(value) or not (value > 0.0) or not math.isfinite(value):
        raise CovsdeInputError(f"{name} must be a finite number > 0, got {value!r}", name)
