"""The formulas of docs/theory.md §3: drift b(V), dense diffusion Σ(V), and the O(m³) noise.

Every formula lives here, once, as a module-level ``@njit`` function on plain arrays, so
that the numba kernels (:mod:`sde._kernels`) and Python (:mod:`sde.models`, the tests, the
finite samplers) call the same code.

Conventions
-----------
* ``V`` is the ``(m, m)`` token covariance ``X Xᵀ / n`` (symmetric positive definite).
* ``P = I − 11ᵀ/m`` centres over tokens.
* ``coef`` is the model's :class:`sde.limits.LimitCoefficients` (``model.limit()``), a typed
  record numba reads by field name: ``att_drift``, ``mlp_drift``, ``smooth``, ``nu``, ``f2``,
  ``f3``, ``a_lin``, ``att_noise`` (their meaning: :mod:`sde.limits`).

Length: the drift, the dense Σ and the O(m³) noise are one set of formulas (docs/theory.md §3)
whose numba implementations call each other; splitting them would split the formulas.
"""
import math

import numpy as np
from numba import njit

from .exact_division import div_const


@njit(cache=True, inline="always")
def attention_drift_into(V, scale, out):
    """Add ``scale · [⟨S, V⟩_F V / m² + (v (V s̃)ᵀ + (V s̃) vᵀ) / (2m)]`` to ``out`` (m, m).

    With ``scale = γ²/τ0²`` this is ``b_att`` of docs/theory.md §3.1: ``S = P V P``,
    ``v = diag(V)``, ``s̃ = diag(S) − tr(S)/m · 1``. Cost O(m²).
    """
    m = V.shape[0]
    r = np.zeros(m)
    for a in range(m):
        acc = 0.0
        for b in range(m):
            acc += V[a, b]
        r[a] = acc / m
    mu = 0.0
    for a in range(m):
        mu += r[a]
    mu /= m
    sv = 0.0
    trS = 0.0
    st = np.empty(m)
    for a in range(m):
        for b in range(m):
            sv += (V[a, b] - r[a] - r[b] + mu) * V[a, b]
        st[a] = V[a, a] - 2.0 * r[a] + mu
        trS += st[a]
    for a in range(m):
        st[a] -= trS / m
    vs = np.zeros(m)
    for a in range(m):
        acc = 0.0
        for b in range(m):
            acc += V[a, b] * st[b]
        vs[a] = acc
    d = r  # r is no longer needed: it holds diag(V), so the last loop is contiguous
    for a in range(m):
        d[a] = V[a, a]
    for a in range(m):
        vaa = V[a, a]
        vsa = vs[a]
        for b in range(m):
            out[a, b] += scale * (sv * V[a, b] / (m * m)
                                  + (vaa * vs[b] + vsa * d[b]) / (2.0 * m))


@njit(cache=True)
def relu_nu(rho, nu_coef):
    """ν(ρ) = nu_coef · (sqrt(1 − ρ²) − ρ arccos ρ), ρ clipped to [−1, 1] (docs/theory.md §3.2)."""
    if rho > 1.0:
        rho = 1.0
    elif rho < -1.0:
        rho = -1.0
    return nu_coef * (np.sqrt(1.0 - rho * rho) - rho * np.arccos(rho))


@njit(cache=True)
def mlp_drift_into(V, coef, scale, out):
    """Add ``scale · b_mlp(V)`` to ``out`` (docs/theory.md §3.2): shaped ReLU or smooth shaping."""
    m = V.shape[0]
    if not coef.smooth:
        for a in range(m):
            for b in range(m):
                if a == b:
                    continue  # ν(1) = 0
                s = np.sqrt(V[a, a] * V[b, b])
                out[a, b] += scale * relu_nu(V[a, b] / s, coef.nu) * s
    else:
        for a in range(m):
            for b in range(m):
                vab = V[a, b]
                out[a, b] += scale * (coef.f2 * (V[a, a] * V[b, b] + vab * (2.0 * vab - 3.0))
                                      + coef.f3 * vab * (V[a, a] + V[b, b] - 2.0))


@njit(cache=True, inline="always")
def drift_into(V, coef, out):
    """Write ``b(V) = att_drift · b_att(V) + mlp_drift · b_act(V)`` into ``out`` (m, m)."""
    out[:, :] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_into(V, coef, coef.mlp_drift, out)
    if coef.att_drift != 0.0:
        attention_drift_into(V, coef.att_drift, out)


@njit(cache=True)
def drift(V, coef):
    """b(V), an (m, m) array, for the coefficient vector ``coef``."""
    out = np.empty_like(V)
    drift_into(V, coef, out)
    return out


@njit(cache=True)
def v_tilde(V):
    """Ṽ = V P V P V (m, m)."""
    m = V.shape[0]
    P = np.eye(m) - np.ones((m, m)) / m
    return V @ P @ V @ P @ V


@njit(cache=True)
def diffusion_dense(V, coef):
    """Dense Σ(V) (m, m, m, m): ``Σ[a,b,c,d] = d⟨V_ab, V_cd⟩/dt`` (docs/theory.md §3).

    ``a_lin Σ_lin + (att_noise/m)² Σ_att``. O(m⁴) memory: for tests and reference solvers only.
    """
    m = V.shape[0]
    out = np.empty((m, m, m, m))
    k_att = (coef.att_noise / m) ** 2
    Vt = v_tilde(V) if k_att != 0.0 else np.zeros((m, m))
    alin = coef.a_lin
    for a in range(m):
        for b in range(m):
            for c in range(m):
                for d in range(m):
                    lin = V[a, c] * V[b, d] + V[a, d] * V[b, c]
                    att = (V[a, c] * Vt[b, d] + V[a, d] * Vt[b, c]
                           + V[b, c] * Vt[a, d] + V[b, d] * Vt[a, c])
                    out[a, b, c, d] = alin * lin + k_att * att
    return out


@njit(cache=True, inline="always")
def whitened_noise_into(L, Z, Gp, coef, scratch):
    """The noise before the sandwich: ``N = sqrt(a_lin) Z + c (G' K + K G'ᵀ)`` in ``scratch[0]``.

    docs/theory.md §4.1: ``L Lᵀ = V`` (lower triangular), ``Z`` symmetric with the law of
    ``(G + Gᵀ)/sqrt 2`` times the step's sqrt(Δt), ``Gp`` (= G') an m×m Gaussian times
    sqrt(Δt), ``K = Lᵀ P L`` (left in ``scratch[2]`` when ``c ≠ 0``), ``c = att_noise / m``.
    ``scratch`` is (3, m, m); ``scratch[1]`` is work space.
    """
    m = L.shape[0]
    N = scratch[0]
    T = scratch[1]
    K = scratch[2]
    sa = np.sqrt(coef.a_lin)
    c = coef.att_noise / m
    for a in range(m):
        for b in range(m):
            N[a, b] = sa * Z[a, b]
    # Loops are ordered so that the innermost index is contiguous; every sum still adds
    # its terms in increasing order of the summation index (same rounding as a dot loop).
    if c != 0.0:
        # K = Lᵀ L − (Lᵀ1)(Lᵀ1)ᵀ / m ; (Lᵀ1)_i = Σ_a L[a, i]  (u lives in T's first row)
        u = T[0]
        for i in range(m):
            acc = 0.0
            for a in range(i, m):
                acc += L[a, i]
            u[i] = acc
        for i in range(m):
            for j in range(i, m):
                K[i, j] = 0.0
        for a in range(m):          # K[i, j] = Σ_{a ≥ j} L[a, i] L[a, j], i ≤ j
            for i in range(a + 1):
                lai = L[a, i]
                for j in range(i, a + 1):
                    K[i, j] += lai * L[a, j]
        for i in range(m):
            for j in range(i, m):
                K[i, j] = K[i, j] - u[i] * u[j] / m
                K[j, i] = K[i, j]
        # T = G' K ; N += c (T + Tᵀ)
        for i in range(m):
            for j in range(m):
                T[i, j] = 0.0
            for k in range(m):
                g = Gp[i, k]
                for j in range(m):
                    T[i, j] += g * K[k, j]
        for i in range(m):
            for j in range(m):
                N[i, j] += c * (T[i, j] + T[j, i])


@njit(cache=True, inline="always")
def noise_into(L, Z, Gp, coef, scratch, out):
    """Write the O(m³) noise ``L (sqrt(a_lin) Z + c (G' K + K G'ᵀ)) Lᵀ`` into ``out``.

    docs/theory.md §4–5: the bracket is :func:`whitened_noise_into` (``L``, ``Z``, ``Gp``,
    ``K``, ``c`` as there). ``scratch`` is (3, m, m).
    Covariance: ``a_lin Σ_lin(V) + c² Σ_att(V)`` per unit Δt.
    """
    m = L.shape[0]
    whitened_noise_into(L, Z, Gp, coef, scratch)
    N = scratch[0]
    T = scratch[1]
    # out = L N Lᵀ  (T = L N uses the lower triangle of L)
    for i in range(m):
        for j in range(m):
            T[i, j] = 0.0
        for k in range(i + 1):
            lik = L[i, k]
            for j in range(m):
                T[i, j] += lik * N[k, j]
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for k in range(j + 1):
                acc += T[i, k] * L[j, k]
            out[i, j] = acc
            out[j, i] = acc


@njit(cache=True, inline="always")
def ito_correction_into(K, coef, out):
    """``C = E[N²]/Δt = a_lin (m + 1) I + c² ((m + 2) K² + tr(K²) I)`` into ``out`` (m, m).

    The second moment of the whitened noise N of :func:`whitened_noise_into` per unit Δt
    (docs/theory.md §4.7), ``c = att_noise / m``; ``K`` is read only when ``c ≠ 0``.
    """
    m = out.shape[0]
    c = coef.att_noise / m
    for i in range(m):
        for j in range(m):
            out[i, j] = 0.0
    if c != 0.0:
        c2 = c * c
        tr = 0.0
        for i in range(m):
            for j in range(m):
                acc = 0.0
                for k in range(m):
                    acc += K[i, k] * K[k, j]
                out[i, j] = c2 * (m + 2.0) * acc
                tr += K[i, j] * K[i, j]
        for i in range(m):
            out[i, i] += c2 * tr
    for i in range(m):
        out[i, i] += coef.a_lin * (m + 1.0)


@njit(cache=True, inline="always")
def cholesky_into(V, L):
    """Lower Cholesky factor of V into L; returns False if V is not positive definite.

    Hand-written for small m so that a failure is a return value per path, not an
    exception for a whole batch.
    """
    m = V.shape[0]
    for j in range(m):
        acc = V[j, j]
        for k in range(j):
            acc -= L[j, k] * L[j, k]
        if not (acc > 0.0):
            return False
        d = np.sqrt(acc)
        L[j, j] = d
        for i in range(j + 1, m):
            acc = V[i, j]
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            L[i, j] = acc / d
        for i in range(j):
            L[i, j] = 0.0
    return True


# ------------------------------------------------------------------ lane-wise (path axis last)
#
# The same formulas on NL paths at once: every per-path (m, m) array becomes an (m, m, NL)
# slice of one workspace with the path ("lane") axis innermost and contiguous, so that the
# arithmetic vectorises across paths. Each lane performs exactly the operations of the scalar
# function above, in the same order (vectorising across lanes reorders no sum): results are
# bit-identical to the scalar ones (tests/test_lanes.py). Inactive lanes compute garbage that
# is never read (NaN at worst; no exceptions).

#: lanes (paths) processed together by the lane kernels; a compile-time constant (the
#: accumulators of :func:`_dot_lanes` and :func:`_sum_lanes` are written out for 8).
NL = 8


@njit(cache=True, inline="always")
def _put_lanes(out, a0, a1, a2, a3, a4, a5, a6, a7):
    """Store the eight per-lane accumulators of the helpers below into ``out`` (NL,)."""
    out[0] = a0
    out[1] = a1
    out[2] = a2
    out[3] = a3
    out[4] = a4
    out[5] = a5
    out[6] = a6
    out[7] = a7


@njit(cache=True, inline="always")
def _dot_lanes(X, Y, k0, k1, out):
    """``out[l] = Σ_{k0 ≤ k < k1} X[k, l] Y[k, l]`` per lane, k ascending from 0.0 (the scalar
    loops' order). X, Y: (≥ k1, NL) views (rows or columns of lane arrays); out: (NL,).

    The eight running sums are local variables, so they stay in registers: written as
    ``out[l] += …`` in a loop, every term is a store, since LLVM cannot always prove that
    ``out`` does not overlap X or Y."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(k0, k1):
        a0 += X[k, 0] * Y[k, 0]
        a1 += X[k, 1] * Y[k, 1]
        a2 += X[k, 2] * Y[k, 2]
        a3 += X[k, 3] * Y[k, 3]
        a4 += X[k, 4] * Y[k, 4]
        a5 += X[k, 5] * Y[k, 5]
        a6 += X[k, 6] * Y[k, 6]
        a7 += X[k, 7] * Y[k, 7]
    _put_lanes(out, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, inline="always")
def _sum_lanes(X, k0, k1, out):
    """``out[l] = Σ_{k0 ≤ k < k1} X[k, l]`` per lane, k ascending from 0.0 (as :func:`_dot_lanes`)."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(k0, k1):
        a0 += X[k, 0]
        a1 += X[k, 1]
        a2 += X[k, 2]
        a3 += X[k, 3]
        a4 += X[k, 4]
        a5 += X[k, 5]
        a6 += X[k, 6]
        a7 += X[k, 7]
    _put_lanes(out, a0, a1, a2, a3, a4, a5, a6, a7)


# The matrix products below keep every entry's sum in the scalar loops' order (k ascending
# from 0.0) but run k outside and the output column inside: the m entries of a row are
# independent chains, where one dot product at a time waits on its own additions' latency.

@njit(cache=True, inline="always")
def _row_sums_lanes(V, r):
    """``r[a, l] = Σ_b V[a, b, l]`` (b ascending from 0.0). V (m, m, NL), r (m, NL)."""
    m = V.shape[0]
    for a in range(m):
        for l in range(NL):
            r[a, l] = 0.0
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                r[a, l] += V[a, b, l]


@njit(cache=True, inline="always")
def _matvec_lanes(V, x, y):
    """``y[a, l] = Σ_b V[a, b, l] x[b, l]`` (b ascending from 0.0). V (m, m, NL); x, y (m, NL)."""
    m = V.shape[0]
    for a in range(m):
        for l in range(NL):
            y[a, l] = 0.0
        for b in range(m):
            for l in range(NL):
                y[a, l] += V[a, b, l] * x[b, l]


@njit(cache=True, inline="always")
def _matmul_lanes(A, B, kmax, C):
    """``C[i, j, l] = Σ_k A[i, k, l] B[k, j, l]`` (k ascending from 0.0) over k < m, or over
    k ≤ i when ``kmax < 0`` (A lower triangular). All (m, m, NL); C not A or B."""
    m = A.shape[0]
    for i in range(m):
        for j in range(m):
            for l in range(NL):
                C[i, j, l] = 0.0
        kend = i + 1 if kmax < 0 else kmax
        for k in range(kend):
            for j in range(m):
                for l in range(NL):
                    C[i, j, l] += A[i, k, l] * B[k, j, l]


@njit(cache=True, inline="always")
def _sv_lanes(V, r, mu, sv):
    """``sv[l] = ⟨P V P, V⟩_F = Σ_a Σ_b (V_ab − r_a − r_b + μ) V_ab`` per lane, a then b
    ascending from 0.0 (:func:`attention_drift_into`'s order; sums in registers as
    :func:`_dot_lanes`). V (m, m, NL); r (m, NL) row means; mu, sv (NL,)."""
    m = V.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for a in range(m):
        for b in range(m):
            a0 += (V[a, b, 0] - r[a, 0] - r[b, 0] + mu[0]) * V[a, b, 0]
            a1 += (V[a, b, 1] - r[a, 1] - r[b, 1] + mu[1]) * V[a, b, 1]
            a2 += (V[a, b, 2] - r[a, 2] - r[b, 2] + mu[2]) * V[a, b, 2]
            a3 += (V[a, b, 3] - r[a, 3] - r[b, 3] + mu[3]) * V[a, b, 3]
            a4 += (V[a, b, 4] - r[a, 4] - r[b, 4] + mu[4]) * V[a, b, 4]
            a5 += (V[a, b, 5] - r[a, 5] - r[b, 5] + mu[5]) * V[a, b, 5]
            a6 += (V[a, b, 6] - r[a, 6] - r[b, 6] + mu[6]) * V[a, b, 6]
            a7 += (V[a, b, 7] - r[a, 7] - r[b, 7] + mu[7]) * V[a, b, 7]
    _put_lanes(sv, a0, a1, a2, a3, a4, a5, a6, a7)


@njit(cache=True, inline="always")
def attention_drift_lanes(V, scale, out, vec, sc):
    """:func:`attention_drift_into` on lanes: V, out (m, m, NL); vec (≥ 4, m, NL), sc (≥ 3, NL).

    Its divisions by m, m² and 2m are :func:`sde.exact_division.div_const` (the same bits,
    without a vector division: they were the drift's main cost at small m)."""
    m = V.shape[0]
    fm = float(m)
    r = vec[0]
    st = vec[1]
    vs = vec[2]
    mu = sc[0]
    sv = sc[1]
    trS = sc[2]
    _row_sums_lanes(V, r)
    for a in range(m):
        for l in range(NL):
            r[a, l] = div_const(r[a, l], fm)
    _sum_lanes(r, 0, m, mu)
    for l in range(NL):
        mu[l] = div_const(mu[l], fm)
        trS[l] = 0.0
    _sv_lanes(V, r, mu, sv)
    for a in range(m):
        for l in range(NL):
            st[a, l] = V[a, a, l] - 2.0 * r[a, l] + mu[l]
            trS[l] += st[a, l]
    for l in range(NL):
        trS[l] = div_const(trS[l], fm)   # the same quotient for every a: once per lane
    for a in range(m):
        for l in range(NL):
            st[a, l] -= trS[l]
    _matvec_lanes(V, st, vs)
    d = r
    for a in range(m):
        for l in range(NL):
            d[a, l] = V[a, a, l]
    # The lower triangle, mirrored: entry (b, a) of the scalar loop is bitwise the same as
    # (a, b) (V is exactly symmetric, the products and the sum are commutative, and ``out``
    # arrives symmetric), and half the divisions are the drift's main cost at small m.
    for a in range(m):
        for b in range(a + 1):
            for l in range(NL):
                x = out[a, b, l] + scale * (div_const(sv[l] * V[a, b, l], fm * fm)
                                             + div_const(V[a, a, l] * vs[b, l]
                                                         + vs[a, l] * d[b, l], 2.0 * fm))
                out[a, b, l] = x
                out[b, a, l] = x


@njit(cache=True, inline="always")
def mlp_drift_lanes(V, coef, scale, out):
    """:func:`mlp_drift_into` on lanes (V, out: (m, m, NL))."""
    m = V.shape[0]
    if not coef.smooth:
        for a in range(m):
            for b in range(m):
                if a == b:
                    continue
                for l in range(NL):
                    s = np.sqrt(V[a, a, l] * V[b, b, l])
                    out[a, b, l] += scale * relu_nu(V[a, b, l] / s, coef.nu) * s
    else:
        for a in range(m):
            for b in range(m):
                for l in range(NL):
                    vab = V[a, b, l]
                    out[a, b, l] += scale * (coef.f2 * (V[a, a, l] * V[b, b, l]
                                                        + vab * (2.0 * vab - 3.0))
                                             + coef.f3 * vab * (V[a, a, l] + V[b, b, l] - 2.0))


@njit(cache=True, inline="always")
def drift_start_lanes(V, coef, out):
    """The part of :func:`drift_into` that every mask shares, on lanes: ``out = 0`` plus the
    MLP's drift (V, out: (m, m, NL)). The attention drift is added after it:
    :func:`attention_drift_lanes` for the complete mask,
    :func:`sde._kernels.masked_lanes.masked_attention_drift_lanes` for a masked one (the lane
    loop composes the two, :mod:`sde._kernels.loops`)."""
    m = V.shape[0]
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                out[a, b, l] = 0.0
    if coef.mlp_drift != 0.0:
        mlp_drift_lanes(V, coef, coef.mlp_drift, out)


@njit(cache=True, inline="always")
def whitened_noise_lanes(L, Z, Gp, coef, N, T, K, u):
    """:func:`whitened_noise_into` on lanes: N (and K when ``c ≠ 0``) from L, Z, Gp (m, m, NL).

    T (m, m, NL) and u (m, NL) are work space. Each product entry is one :func:`_dot_lanes`
    (running sums in registers), adding its terms in the scalar function's order (same bits).
    """
    m = L.shape[0]
    fm = float(m)
    sa = np.sqrt(coef.a_lin)
    c = coef.att_noise / m
    for a in range(m):
        for b in range(m):
            for l in range(NL):
                N[a, b, l] = sa * Z[a, b, l]
    if c != 0.0:
        for i in range(m):
            _sum_lanes(L[:, i], i, m, u[i])
        for i in range(m):          # K[i, j] = Σ_{a ≥ j} L[a, i] L[a, j], i ≤ j, a ascending
            for j in range(i, m):
                _dot_lanes(L[:, i], L[:, j], j, m, K[i, j])
        for i in range(m):
            for j in range(i, m):
                for l in range(NL):
                    K[i, j, l] = K[i, j, l] - div_const(u[i, l] * u[j, l], fm)
                    K[j, i, l] = K[i, j, l]
        for i in range(m):          # T = G' K
            for j in range(m):
                _dot_lanes(Gp[i], K[:, j], 0, m, T[i, j])
        for i in range(m):
            for j in range(m):
                for l in range(NL):
                    N[i, j, l] += c * (T[i, j, l] + T[j, i, l])


@njit(cache=True, inline="always")
def sandwich_lanes(L, N, T, out):
    """The second half of :func:`noise_into` on lanes: ``out = L N Lᵀ`` from the whitened
    noise N of :func:`whitened_noise_lanes` (L, N, T, out (m, m, NL); T work). The Euler
    lane loop calls the two halves in turn (one function calling both would be copied
    whole into the loop with the first inside it: :mod:`sde._kernels.loops`)."""
    m = L.shape[0]
    for i in range(m):              # T = L N
        for j in range(m):
            _dot_lanes(L[i], N[:, j], 0, i + 1, T[i, j])
    for i in range(m):              # out = T Lᵀ
        for j in range(i + 1):
            _dot_lanes(T[i], L[j], 0, j + 1, out[i, j])
            for l in range(NL):
                out[j, i, l] = out[i, j, l]


@njit(cache=True, inline="always")
def ito_correction_lanes(K, coef, out, tr):
    """:func:`ito_correction_into` on lanes: K, out (m, m, NL); tr (NL,) work."""
    m = out.shape[0]
    c = coef.att_noise / m
    for i in range(m):
        for j in range(m):
            for l in range(NL):
                out[i, j, l] = 0.0
    if c != 0.0:
        c2 = c * c
        for l in range(NL):
            tr[l] = 0.0
        for i in range(m):
            for j in range(m):
                _dot_lanes(K[i], K[:, j], 0, m, out[i, j])
                for l in range(NL):
                    out[i, j, l] = c2 * (m + 2.0) * out[i, j, l]
                    tr[l] += K[i, j, l] * K[i, j, l]
        for i in range(m):
            for l in range(NL):
                out[i, i, l] += c2 * tr[l]
    for i in range(m):
        for l in range(NL):
            out[i, i, l] += coef.a_lin * (m + 1.0)


@njit(cache=True, inline="always")
def cholesky_lanes(V, L, ok):
    """:func:`cholesky_into` on lanes; ``ok[l]`` is set False for a lane that is not PD.

    A failed lane's L is garbage (the scalar version stops early; its L is never read).
    """
    m = V.shape[0]
    for l in range(NL):
        ok[l] = True
    for j in range(m):
        for l in range(NL):
            L[j, j, l] = V[j, j, l]
        for k in range(j):
            for l in range(NL):
                L[j, j, l] -= L[j, k, l] * L[j, k, l]
        for l in range(NL):
            ok[l] = ok[l] & (L[j, j, l] > 0.0)
        # a select, then the root, in a loop of their own: the roots vectorise (under a
        # branch, or beside the flags' stores, they did not); a failed lane's root is of 1.0
        for l in range(NL):
            acc = L[j, j, l]
            L[j, j, l] = math.sqrt(acc if acc > 0.0 else 1.0)
        for i in range(j + 1, m):
            for l in range(NL):
                L[i, j, l] = V[i, j, l]
            for k in range(j):
                for l in range(NL):
                    L[i, j, l] -= L[i, k, l] * L[j, k, l]
            for l in range(NL):
                L[i, j, l] = L[i, j, l] / L[j, j, l]
        for i in range(j):
            for l in range(NL):
                L[i, j, l] = 0.0


@njit(cache=True, inline="always")
def lower_times_into(L, B, out):
    """``out = L B`` (m, m), L lower triangular, k ascending from 0.0 per entry (the masked
    noise's ``L G'`` and ``L Z``, the SPD step's ``F = L E``)."""
    m = L.shape[0]
    for i in range(m):
        for j in range(m):
            acc = 0.0
            for k in range(i + 1):
                acc += L[i, k] * B[k, j]
            out[i, j] = acc


@njit(cache=True, inline="always")
def solve_lower_cols(L, B, X):
    """X = L⁻¹ B (forward substitution, column by column; L lower triangular, X not B)."""
    m = L.shape[0]
    for j in range(m):
        for i in range(m):
            acc = B[i, j]
            for k in range(i):
                acc -= L[i, k] * X[k, j]
            X[i, j] = acc / L[i, i]
