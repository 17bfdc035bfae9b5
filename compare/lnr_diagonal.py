"""Exact weak error of exp(−V_aa) for the Li–Nica–Roy shaped ReLU MLP, by Mellin–Barnes.

For the Li–Nica–Roy MLP (no residual) the diagonal entry V_aa is a chain of its own
(docs/theory.md §6.8). One layer of width n maps ``V'_aa = V_aa · X`` with

    X = (c/n) Σ_{j=1..n} s(g_j)²,   g_j iid N(0, 1),   s(x) = s₊ x⁺ − s₋ x⁻,
    s± = 1 + c±/sqrt(n),            c = 2/(s₊² + s₋²),

independent of V and of the other layers (row a of L G is V_aa^{1/2} times a standard normal
row, whatever the factor L). So after d = t n layers ``V_aa = V0_aa Π X_ℓ``. Writing
``R = Σ g_j² ~ χ²_n``, ``k`` = the number of positive g_j ~ Bin(n, 1/2) and
``B = Σ_{g_j > 0} g_j² / R ~ Beta(k/2, (n − k)/2)`` (independent of R):

    X = (c/n) R (s₋² + (s₊² − s₋²) B),
    E X^{−s} = (2c/n)^{−s} Γ(n/2 − s)/Γ(n/2) · Σ_k P(k) E[(s₋² + (s₊² − s₋²) B_k)^{−s}]

(the Beta expectations by Gauss–Jacobi quadrature). The SDE's diagonal is a geometric
Brownian motion, ``dV_aa = sqrt 2 V_aa dW`` (no drift: ν(1) = 0), so
``E (V_aa(t)/V0_aa)^{−s} = exp(t (s + s²))``. With the Mellin–Barnes integral
``e^{−y} = (1/2πi) ∫_{σ − i∞}^{σ + i∞} Γ(s) y^{−s} ds`` (σ > 0),

    E exp(−V_aa) = (1/2π) ∫ Γ(σ + iv) V0_aa^{−σ−iv} M(σ + iv) dv,

M = (E X^{−s})^{tn} for the network and exp(t(s + s²)) for the SDE: the weak error
``e(n, t) = E exp(−V_aa(finite)) − E exp(−V_aa(SDE))`` to about 1e-12, with no sampling
and no SDE step, at any width. Censoring (max|V| > the bound) is left out: at the study's
settings its probability is below 1e-10.
"""
import math

import numpy as np
import scipy.special as sp
import scipy.stats

from sde.errors import CovsdeInputError

#: Mellin–Barnes abscissa σ (0 < σ < n/2); the integrand decays like exp(−π|v|/2 − t v²)
SIGMA = 0.5
#: the integral runs over |v| <= V_MAX on a uniform grid of V_POINTS points (trapezoid, step 0.05:
#: error ~ exp(−2πσ/0.05) for an integrand analytic in the strip 0 < Re s < n/2, and |Γ| < e^{-39} beyond)
V_MAX = 25.0
V_POINTS = 1001
#: Gauss–Jacobi nodes per Beta expectation
JACOBI_NODES = 48
#: binomial weights below this are dropped
PMF_FLOOR = 1e-18


def _check(width, t, v0):
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 2:
        raise CovsdeInputError(f"width must be an integer >= 2, got {width!r}")
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise CovsdeInputError(f"t must be a finite number > 0, got {t!r}")
    d = t * width
    if abs(d - round(d)) > 1e-9 * max(d, 1.0):
        raise CovsdeInputError(f"t·width must be a whole number of layers, got {d:g}")
    if not (isinstance(v0, (int, float)) and math.isfinite(v0) and v0 > 0):
        raise CovsdeInputError(f"v0 must be a finite number > 0, got {v0!r}")
    return int(round(d))


def _grid():
    v = np.linspace(-V_MAX, V_MAX, V_POINTS)
    return v, SIGMA + 1j * v, v[1] - v[0]


def log_layer_mellin(c_plus, c_minus, width, s):
    """``log E X^{−s}`` of one layer's diagonal factor X at ``width``; ``s`` complex array."""
    n = int(width)
    sp_, sm_ = 1.0 + c_plus / math.sqrt(n), 1.0 + c_minus / math.sqrt(n)
    a, delta = sm_ * sm_, sp_ * sp_ - sm_ * sm_
    c = 2.0 / (sp_ * sp_ + sm_ * sm_)
    s = np.asarray(s, dtype=complex)
    out = -s * math.log(2.0 * c / n) + sp.loggamma(n / 2.0 - s) - sp.loggamma(n / 2.0)
    k = np.arange(n + 1)
    pmf = scipy.stats.binom.pmf(k, n, 0.5)
    beta_part = np.zeros_like(s)
    for kk, w in zip(k, pmf):
        if w < PMF_FLOOR:
            continue
        if kk == 0:
            beta_part += w * a ** (-s)
        elif kk == n:
            beta_part += w * (a + delta) ** (-s)
        else:
            x, wt = sp.roots_jacobi(JACOBI_NODES, (n - kk) / 2.0 - 1.0, kk / 2.0 - 1.0)
            b = (1.0 + x) / 2.0
            wt = wt / wt.sum()
            beta_part += w * (wt[None, :] * np.exp(-s[:, None] * np.log(a + delta * b)[None, :])
                              ).sum(axis=1)
    return out + np.log(beta_part)


def _mellin_mean(m_values, v0, s, dv):
    """(1/2π) ∫ Γ(s) v0^{−s} M(s) dv on the grid, M given as values."""
    integrand = np.exp(sp.loggamma(s) - s * math.log(v0)) * m_values
    return float(np.real(integrand.sum() * dv) / (2.0 * math.pi))


def sde_mean_exp(t, v0=1.0):
    """E exp(−V_aa(t)) of the SDE (geometric Brownian motion from ``v0``)."""
    _, s, dv = _grid()
    return _mellin_mean(np.exp(t * (s + s * s)), v0, s, dv)


def finite_mean_exp(c_plus, c_minus, width, t, v0=1.0):
    """E exp(−V_aa) after t·width layers of the width-``width`` network, from ``v0``."""
    d = _check(width, t, v0)
    _, s, dv = _grid()
    return _mellin_mean(np.exp(d * log_layer_mellin(c_plus, c_minus, width, s)), v0, s, dv)


def weak_error_exp(c_plus, c_minus, widths, t, v0=1.0):
    """``e(n, t) = E exp(−V_aa(finite)) − E exp(−V_aa(SDE))`` at each of ``widths``
    (array, same order), exact up to quadrature error (about 1e-12)."""
    _, s, dv = _grid()
    ref = t * (s + s * s)
    out = []
    for n in widths:
        d = _check(n, t, v0)
        diff = np.exp(d * log_layer_mellin(c_plus, c_minus, n, s)) - np.exp(ref)
        out.append(_mellin_mean(diff, v0, s, dv))
    return np.asarray(out)


def local_rate(widths, errors):
    """``−d log|e| / d log n`` between consecutive widths (length len(widths) − 1)."""
    n = np.asarray(widths, dtype=float)
    e = np.abs(np.asarray(errors, dtype=float))
    return -np.diff(np.log(e)) / np.diff(np.log(n))
