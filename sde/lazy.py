"""Packages whose public names are imported on first use (PEP 562).

``lazy_package(__name__, {"simulate": "simulate", ...})`` at the end of a package's
``__init__`` makes ``package.name`` (and ``from package import name``) import the defining
submodule only when asked, so that importing a light submodule (``sde.models``,
``sde.errors``) does not pay for the heavy ones (numba kernels, scipy, xarray). Where a
function has the name of its submodule (``sde.simulate``, ``finite.sample``), the package
attribute stays the function even after the submodule is imported, as with an eager
``from .simulate import simulate``.
"""
import importlib
import sys
import types


class _LazyPackage(types.ModuleType):
    def __getattr__(self, name):
        where = self.__dict__.get("_lazy_names", {}).get(name)
        if where is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where}", self.__name__), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name, value):
        # the import system binds a submodule on its package: keep the function of that name
        if (isinstance(value, types.ModuleType) and name == self.__dict__.get(
                "_lazy_names", {}).get(name) and hasattr(value, name)):
            value = getattr(value, name)
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy_names", {})))


def lazy_package(name, names):
    """Make the package ``name`` import each of ``names`` (public name → submodule) on use."""
    module = sys.modules[name]
    module._lazy_names = dict(names)
    module.__class__ = _LazyPackage
    return module
