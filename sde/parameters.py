"""Model parameters that carry their own help: one dataclass field per parameter.

A model class declares each constructor parameter with :func:`parameter`, which stores the
parameter's help text and admissible range on the field (``field.metadata``); its default
is the field's default. The CLI derives each model flag (``--`` + name with ``_`` → ``-``),
its type, default and help from the fields (:func:`describe`), so a model with a parameter
name never seen before gets a working flag with no table to edit. Validation stays in the
model's ``__post_init__``; the range here is what ``--help`` shows.

:func:`shared` returns the field of a parameter several models take (``gamma``, ``heads``,
the mask fields …), so that its text is written once.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

#: marks a parameter without default in :func:`describe` (and ``Model.parameters``).
REQUIRED = object()


def parameter(default=dataclasses.MISSING, *, help: str, range: str | None = None):
    """A dataclass field for a model parameter: ``help`` (one line, what it means) and
    ``range`` (the admissible values, as text: ``"(0, 1]"``, ``">= 1"``)."""
    return dataclasses.field(default=default, metadata={"help": help, "range": range})


class ParameterInfo(NamedTuple):
    """One constructor parameter of a model class, read from its field."""

    name: str
    #: ``float``, ``int``, ``str`` or ``bool`` (``X | None`` reads as X)
    type: type
    #: the default, or :data:`REQUIRED`
    default: object
    help: str
    range: str | None

    def text(self) -> str:
        """Help and range in one phrase (the CLI's help of the flag)."""
        return self.help + (f"; {self.range}" if self.range else "")


_TYPES = {"float": float, "int": int, "str": str, "bool": bool}


def _type_of(field):
    hint = field.type
    hint = getattr(hint, "__name__", str(hint)).replace(" | None", "").replace("Optional[", "")
    return _TYPES.get(hint.rstrip("]"), str)


def describe(cls) -> list[ParameterInfo]:
    """The constructor parameters of a model class (a dataclass), in field order. A field
    made without :func:`parameter` is described by its name."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = REQUIRED if f.default is dataclasses.MISSING else f.default
        out.append(ParameterInfo(f.name, _type_of(f), default,
                                 f.metadata.get("help") or f.name.replace("_", " "),
                                 f.metadata.get("range")))
    return out


#: the parameters several models take: name → (help, range)
_SHARED = {
    "gamma": ("residual branch weight γ, λ² + γ² = 1", "in (0, 1]"),
    "tau0": ("attention temperature τ0; logits are divided by τ0 sqrt(n n_k)", "> 0"),
    "heads": ("attention heads H", "an integer >= 1 dividing the width"),
    "c_plus": ("shaped ReLU slope s₊ = 1 + c₊/sqrt(n)", "finite"),
    "c_minus": ("shaped ReLU slope s₋ = 1 + c₋/sqrt(n)", "finite"),
    "mask": ("attention mask: complete, causal, sliding, causal-sliding or sparse "
             "(docs/theory.md §2.4, §3.5)", None),
    "window": ("mask window w (mask sliding: |a-b| <= w; causal-sliding: a-w <= b <= a)",
               ">= 1 with those masks"),
    "sparse_k": ("keys per row besides the token itself (mask sparse; the graph is drawn "
                 "from the run's seed)", "1 <= k < m"),
}


def shared(name, default=dataclasses.MISSING):
    """The field of a parameter that several models share (its help written once)."""
    help_, range_ = _SHARED[name]
    return parameter(default, help=help_, range=range_)
