"""Package version (single source: pyproject.toml, read through importlib.metadata)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("covsde")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
