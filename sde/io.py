"""Writing and reading datasets: atomic writes, clear errors on bad files."""
import os

import xarray as xr

from .errors import CovsdeInputError
from .schema import validate_dataset


def check_output_path(path, name="out"):
    """Raise unless ``path``'s directory exists (checked before any work is done)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise CovsdeInputError(f"{name}: directory does not exist: {d}")
    if os.path.isdir(path):
        raise CovsdeInputError(f"{name}: {path} is a directory, expected a file name")


def write_dataset(ds, path):
    """Write ``ds`` to netCDF (h5netcdf) at ``path`` atomically: ``path.tmp`` then rename."""
    check_output_path(path)
    tmp = f"{path}.tmp"
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    except OSError as exc:
        raise CovsdeInputError(f"out: cannot write {path} ({exc.strerror or exc})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_dataset(path, name=None):
    """Open a covsde dataset (loaded into memory) and check its schema."""
    name = name or str(path)
    if not os.path.isfile(path):
        raise CovsdeInputError(f"{name}: file not found")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py / xarray raise many types for a corrupt file
        raise CovsdeInputError(f"{name}: cannot read as netCDF ({type(exc).__name__})") from None
    return validate_dataset(ds, name)
