"""No private module or private name is imported from another package.

The packages are ``sde``, ``finite`` and ``compare`` (and ``benchmarks``, a client of all
three). A module may import anything from its own package; from another package it imports
only public modules and names (no component or name with a leading underscore; dunder
names such as ``__version__`` are public).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("sde", "finite", "compare")
CHECKED = PACKAGES + ("benchmarks",)


def _private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports(source, package, module_parts):
    """``(line, text)`` of every import in ``source`` (a module of ``package`` whose dotted
    name is ``module_parts``) that reaches a private module or name of another package."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(alias.name.split("."), None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module
                base = module_parts[:len(module_parts) - node.level]
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = node.module.split(".")
            targets = [(mod, alias.name) for alias in node.names]
        else:
            continue
        for mod, name in targets:
            if mod[0] not in PACKAGES or mod[0] == package:
                continue
            if any(_private(p) for p in mod) or (name is not None and _private(name)):
                bad.append((node.lineno, ".".join(mod) + (f" import {name}" if name else "")))
    return bad


def _modules():
    for pkg in CHECKED:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path


@pytest.mark.parametrize("pkg, path", list(_modules()),
                         ids=lambda x: str(x.relative_to(ROOT)) if isinstance(x, pathlib.Path)
                         else x)
def test_no_private_import_across_packages(pkg, path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] + ["__init__"]
    bad = private_imports(path.read_text(), pkg, parts)
    assert not bad, f"{path.relative_to(ROOT)} imports private names of another package: {bad}"


def test_the_check_sees_private_imports():
    """Negative control: each form of a cross-package private import is caught; the same
    imports within one package, and public ones, are not."""
    src = ("from sde._kernels import simulate_blocks\n"
           "import sde._kernels\n"
           "from sde.models import _mask_of\n"
           "from ..sde import _x\n"
           "from sde import __version__, simulate\n"
           "from sde.models import Model\n")
    bad = private_imports(src, "finite", ["finite", "unshaped", "models"])
    assert [line for line, _ in bad] == [1, 2, 3]
    assert private_imports(src, "sde", ["sde", "simulate"]) == []
    rel = private_imports("from ...sde import _x\n", "finite", ["finite", "unshaped", "models"])
    assert rel == [(1, "sde import _x")]
