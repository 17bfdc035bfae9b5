"""Figures drawn from saved datasets (matplotlib; none of them saves or shows by itself except
:func:`save_figure`): :mod:`~compare.figures.style` (colours, trajectories, atomic saving),
:mod:`~compare.figures.overlay` (finite vs SDE vs ODE distributions),
:mod:`~compare.figures.gallery` (``covsde figures``), :mod:`~compare.figures.collapse`
(rank collapse), :mod:`~compare.figures.masked` (causal vs complete mask by token position),
:mod:`~compare.figures.sweep` (figures from a sweep STORE), :mod:`~compare.figures.espa`
(E-SPA against its target kernel), :mod:`~compare.figures.ln_equilibria` (attention + LN
equilibria of every rank).

The names below are imported on first use: importing a submodule does not import pyplot.
"""
import importlib

_NAMES = {"compare_figure": "overlay", "plot_overlay": "overlay", "plot_trajectories": "style",
          "save_figure": "style"}
__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
