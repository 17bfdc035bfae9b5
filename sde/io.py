"""Writing and reading datasets: atomic, compressed writes; validated reads.

Storage (lossless): ``V`` is symmetric, so only its upper triangle is stored, as
``V_packed(path, time, pair)`` with ``pair`` running over ``numpy.triu_indices(m)``
(row-major), plus, when V is not exactly symmetric (round-off in finite samplers), the
strict lower triangle as ``V_lower_xor`` (bit pattern XOR its mirror: zero where symmetric),
all compressed with HDF5's shuffle + zlib filters and protected by a Fletcher-32
checksum per chunk (a corrupted chunk fails on read instead of yielding numbers).
:func:`read_dataset` rebuilds the full ``V(path, time, token_a, token_b)`` bit for bit;
other netCDF readers see ``V_packed`` and the attribute ``V_packing`` that says how to
unpack it (:func:`unpack_V`). Files written without packing (older covsde) read as before.

Compression ratio: float64 covariances from a simulation carry ~52 random mantissa bits per
value, so a lossless coder cannot do much better than dropping the lower triangle: measured
2.2× on an m = 20, 2000-path block SDE file (646 MB → 295 MB; zlib with shuffle; lzma
reaches 2.26×), 1.7× on the demo's m = 3 files.
"""
import os
import warnings

import numpy as np
import xarray as xr

from .errors import CovsdeInputError
from .schema import validate_data, validate_dataset

PACKING = "upper triangle of V, pair k = numpy.triu_indices(m)[0][k], [1][k] (row-major)"
COMPLEVEL = 1  # level 4 gains < 1 % more on simulation data and writes 1.4x slower


def check_output_path(path, name="out"):
    """Raise unless ``path``'s directory exists and is writable (checked before any work)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CovsdeInputError(f"{name}: directory does not exist: {d}")
    if os.path.isdir(path):
        raise CovsdeInputError(f"{name}: {path} is a directory, expected a file name")
    check_writable_dir(d, name)


def check_writable_dir(d, name="out"):
    """Raise unless a file can be created in the existing directory ``d`` (tried for real:
    permission bits do not tell for root or read-only mounts)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=d):
            pass
    except OSError as exc:
        raise CovsdeInputError(f"{name}: cannot write in {d} ({exc.strerror or exc})") from None


def pack_V(V):
    """(..., m, m) symmetric → (..., m(m+1)/2): the upper triangle, row-major."""
    m = V.shape[-1]
    iu = np.triu_indices(m)
    return V[..., iu[0], iu[1]]


def unpack_V(P, m):
    """Inverse of :func:`pack_V`: (..., m(m+1)/2) → (..., m, m), symmetric."""
    iu = np.triu_indices(m)
    V = np.empty(P.shape[:-1] + (m, m), dtype=P.dtype)
    V[..., iu[0], iu[1]] = P
    V[..., iu[1], iu[0]] = P
    return V


def _to_storage(ds, pack=True, compress=True):
    """The dataset as stored: V packed (when exactly symmetric) and compression encodings."""
    V = ds["V"]
    m = V.sizes["token_a"]
    out = ds
    name = "V"
    names = ["V"]
    if pack:
        vals = np.ascontiguousarray(V.values, dtype=np.float64)
        out = ds.drop_vars("V")
        out["V_packed"] = (("path", "time", "pair"), pack_V(vals), dict(V.attrs))
        out["V_packed"].attrs["V_packing"] = PACKING
        out["V_packed"].attrs["V_packing_m"] = int(m)
        names = ["V_packed"]
        # round-off asymmetry (finite samplers): the strict lower triangle is stored as the
        # XOR of its bit pattern with its mirror (zero where symmetric: compresses to ~nothing)
        il = np.tril_indices(m, -1)
        lower = vals[..., il[0], il[1]].view(np.uint64)
        mirror = np.ascontiguousarray(vals[..., il[1], il[0]]).view(np.uint64)
        xor = lower ^ mirror
        if xor.any():
            out["V_lower_xor"] = (("path", "time", "lower_pair"), xor,
                                  {"description": "bits of V[a, b] (a > b, numpy.tril_indices"
                                                  "(m, -1)) XOR bits of V[b, a]"})
            names.append("V_lower_xor")
        out.attrs = dict(ds.attrs)
    encoding = {}
    if compress:
        for name in names:
            shape = out[name].shape
            per_path = int(np.prod(shape[1:])) * 8
            chunk_paths = int(max(1, min(shape[0], (4 << 20) // max(per_path, 1))))
            encoding[name] = dict(zlib=True, complevel=COMPLEVEL, shuffle=True,
                                  fletcher32=True, chunksizes=(chunk_paths,) + tuple(shape[1:]))
    return out, encoding


def write_dataset(ds, path, pack=True, compress=True):
    """Write ``ds`` to netCDF (h5netcdf) at ``path`` atomically: ``path.tmp`` then rename.

    ``pack``: store the upper triangle of V, and any round-off asymmetry as the bitwise XOR
    of the lower triangle with its mirror (lossless: reading gives V bit for bit). ``compress``:
    shuffle + zlib + Fletcher-32. An unwritable location is a one-line
    :class:`CovsdeInputError`; Ctrl-C or any failure leaves no file behind.
    """
    check_output_path(path)
    tmp = f"{path}.tmp"
    out, encoding = _to_storage(ds, pack, compress)
    try:
        out.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
        os.replace(tmp, path)
    except OSError as exc:
        raise CovsdeInputError(f"out: cannot write {path} ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _from_storage(ds):
    if "V_packed" not in ds:
        return ds
    P = ds["V_packed"]
    m = P.attrs.get("V_packing_m")
    k = P.sizes.get("pair", 0)
    m_from_k = int(round((np.sqrt(8 * k + 1) - 1) / 2))
    if m is None or m_from_k * (m_from_k + 1) // 2 != k or int(m) != m_from_k:
        raise CovsdeInputError("V_packed has an inconsistent size")
    attrs = {k2: v for k2, v in P.attrs.items() if k2 not in ("V_packing", "V_packing_m")}
    V = unpack_V(np.asarray(P.values, dtype=np.float64), int(m))
    out = ds.drop_vars("V_packed")
    if "V_lower_xor" in ds:
        il = np.tril_indices(int(m), -1)
        X = np.asarray(ds["V_lower_xor"].values, dtype=np.uint64)
        if X.shape != V.shape[:2] + (il[0].size,):
            raise CovsdeInputError("V_lower_xor has an inconsistent size")
        mirror = np.ascontiguousarray(V[..., il[1], il[0]]).view(np.uint64)
        V[..., il[0], il[1]] = (mirror ^ X).view(np.float64)
        out = out.drop_vars("V_lower_xor")
    out["V"] = (("path", "time", "token_a", "token_b"), V, attrs)
    out.attrs = dict(ds.attrs)
    return out


def read_dataset(path, name=None, check_data=True):
    """Open a covsde dataset (loaded into memory), check its schema and, by default, its
    data (symmetry, finiteness of alive paths, status consistency: :func:`validate_data`).

    Any unreadable, foreign or corrupted file is a one-line :class:`CovsdeInputError`.
    """
    name = name or str(path)
    if not os.path.isfile(path):
        raise CovsdeInputError(f"{name}: file not found")
    if not os.access(path, os.R_OK):
        raise CovsdeInputError(f"{name}: file is not readable (permission denied)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                ds = ds.load()
    except Exception as exc:  # h5py / xarray raise many types for a corrupt file
        raise CovsdeInputError(f"{name}: cannot read as netCDF ({_why(exc)})") from None
    try:
        ds = _from_storage(ds)
    except CovsdeInputError as exc:
        raise CovsdeInputError(f"{name}: corrupted data: {exc}") from None
    ds = validate_dataset(ds, name)
    if check_data:
        validate_data(ds, name)
    return ds


def _why(exc):
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "checksum" in text.lower() or "fletcher" in text.lower():
        return "checksum mismatch: the file is corrupted"
    if "filter" in text.lower() or "inflate" in text.lower() or "zlib" in text.lower():
        return "compressed data cannot be decoded: the file is corrupted"
    return type(exc).__name__ + (f": {text[:120]}" if text else "")
