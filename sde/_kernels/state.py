"""What every kernel shares about a path's state: status codes, the state check, the blow-up
test, the path start and the lane workspace.

Status codes (also in :mod:`sde.schema`): 0 alive, 1 left the PD cone (Cholesky of the new
state failed), 2 blew up (non-finite entry or ``|V_ab| > bound``).
"""
import numpy as np
from numba import njit

from ..coefficients import NL, cholesky_into

ALIVE, LEFT_CONE, BLEW_UP = 0, 1, 2


@njit(cache=True)
def used_blocks(block_len):
    """Blocks that hold paths: they come first, padding (length 0) after
    (:func:`sde.runs.kernel_chunks`). Work is split over these only, so that a chunk of fewer
    blocks than the padded tuple still uses every thread (a static split of the padded range
    gave one thread all the paths below 8192)."""
    n = 0
    while n < block_len.shape[0] and block_len[n] > 0:
        n += 1
    return n


@njit(cache=True, inline="always")
def blew_up(Vn, bound):
    """True if an entry of ``Vn`` (m, m) is non-finite or above ``bound`` in absolute value."""
    m = Vn.shape[0]
    for a in range(m):
        for b in range(m):
            if not (abs(Vn[a, b]) <= bound):  # catches NaN and inf too
                return True
    return False


@njit(cache=True, inline="always")
def check_state(Vn, bound, Ln):
    """Status of a new state: 2 if non-finite or above bound, 1 if not PD, else 0 (Ln filled)."""
    if blew_up(Vn, bound):
        return BLEW_UP
    if not cholesky_into(Vn, Ln):
        return LEFT_CONE
    return ALIVE


@njit(cache=True, inline="always")
def blew_lanes(Vn, bound, count, blew):
    """``blew[l]``: an entry of the symmetric ``Vn[:, :, l]`` is non-finite or above ``bound``
    in absolute value (status 2, as :func:`blew_up`). The lower triangle is tested, and
    the failures are counted in the float lanes of ``count`` (NL,): this vectorises, and a
    running boolean OR did not (8 % of the Euler step at m = 3)."""
    m = Vn.shape[0]
    for l in range(NL):
        count[l] = 0.0
    for a in range(m):
        for b in range(a + 1):
            for l in range(NL):
                count[l] = count[l] + (0.0 if abs(Vn[a, b, l]) <= bound else 1.0)
    for l in range(NL):
        blew[l] = count[l] != 0.0


@njit(cache=True, inline="always")
def start_path(V, L, V0, L0, l, p, out_V, save0):
    """Lane ``l`` of ``V``, ``L`` (m, m, NL) set to ``V0`` and its factor ``L0``; when ``save0``,
    ``V0`` is also saved as time 0 of path ``p``."""
    m = V0.shape[0]
    for a in range(m):
        for b in range(m):
            V[a, b, l] = V0[a, b]
            L[a, b, l] = L0[a, b]
    if save0:
        for a in range(m):
            for b in range(m):
                out_V[p, 0, a, b] = V0[a, b]


def factor(V0):
    """Cholesky factor of V0 (PD, checked by the caller) with the kernels' own routine."""
    L0 = np.zeros_like(V0)
    cholesky_into(V0, L0)
    return L0


class Slots:
    """The lane workspace: one (n, m, m, NL) array, every per-path (m, m) array an (m, m, NL)
    slot of it with the lane axis innermost, so that every access is a constant offset from
    one base pointer (LLVM proves the slots disjoint and packs the lanes into SIMD registers).

    Slots 0–9 every kernel has: V, L, Vn, Ln, Z, G', b (the drift), and three for the noise
    (N, T, K). The SPD step adds four (X, M, E, F), masked coefficients six (the drift's B,
    R, W, U, and two of work vectors), then four of work vectors come last (their row 0 an
    (m, NL) vector each, their row 1 column 0 an (NL,) scalar each). Computed in Python when
    a kernel is built; the kernel closes over the integers only.
    """

    V, L, VN, LN, Z, GP, B, N, T, K = range(10)

    def __init__(self, spd, masked):
        nxt = 10
        self.X = self.M = self.E = self.F = -1
        if spd:
            self.X, self.M, self.E, self.F = range(nxt, nxt + 4)
            nxt += 4
        self.D = -1
        if masked:
            self.D = nxt        # B, R, W, U, then two slots of vectors
            nxt += 6
        self.Q = nxt
        self.n = nxt + 4
