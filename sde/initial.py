"""Initial covariances V0: validation, the equicorrelated family, loading from .npy."""
import numpy as np

from .errors import CovsdeInputError


def validate_V0(V0, name="V0"):
    """Return V0 as a float64 (m, m) array, or raise :class:`CovsdeInputError`.

    Checks: 2-D square, m ≥ 2, finite, symmetric (relative tolerance 1e-10, then
    symmetrised exactly), positive definite (Cholesky).
    """
    if np.iscomplexobj(V0):
        raise CovsdeInputError(f"{name} must be a real (m, m) array, got complex values")
    try:
        V = np.array(V0, dtype=np.float64)
    except (TypeError, ValueError):
        raise CovsdeInputError(f"{name} must be a numeric (m, m) array") from None
    if V.ndim != 2 or V.shape[0] != V.shape[1]:
        raise CovsdeInputError(f"{name} must be a square (m, m) array, got shape {V.shape}")
    if V.shape[0] < 2:
        raise CovsdeInputError(f"{name} must have m >= 2 tokens, got m = {V.shape[0]}")
    if not np.all(np.isfinite(V)):
        raise CovsdeInputError(f"{name} must be finite (no NaN or inf)")
    scale = max(np.max(np.abs(V)), 1e-300)
    if np.max(np.abs(V - V.T)) > 1e-10 * scale:
        raise CovsdeInputError(f"{name} must be symmetric")
    V = 0.5 * (V + V.T)
    try:
        np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        raise CovsdeInputError(f"{name} must be positive definite") from None
    return V


def equicorrelated(m, rho0):
    """Unit-diagonal V0 with constant off-diagonal ρ0; needs m ≥ 2 and −1/(m−1) < ρ0 < 1."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
        raise CovsdeInputError(f"tokens must be an integer >= 2, got {m!r}")
    lo = -1.0 / (m - 1)
    if not np.isfinite(rho0) or not (lo < rho0 < 1.0):
        raise CovsdeInputError(f"rho0 must satisfy {lo:.6g} < rho0 < 1 for m = {m}, got {rho0!r}")
    return (1.0 - rho0) * np.eye(m) + rho0 * np.ones((m, m))


def load_V0(path):
    """Load and validate V0 from a ``.npy`` file."""
    try:
        V = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CovsdeInputError(f"V0: file not found: {path}") from None
    except (OSError, ValueError, EOFError) as exc:  # EOFError: empty file
        raise CovsdeInputError(f"V0: cannot read {path} as a .npy array ({exc})") from None
    if not isinstance(V, np.ndarray):  # e.g. an .npz archive
        raise CovsdeInputError(f"V0: {path} is not a single .npy array")
    return validate_V0(V, name=f"V0 ({path})")
