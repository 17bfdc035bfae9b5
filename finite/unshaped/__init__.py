"""The unshaped Transformers of the rank-collapse papers (docs/theory.md §2.4), finite only.

:mod:`finite.unshaped.models` holds the model objects (sub-layers and the named stacks
``post-ln``, ``pre-ln``, ``attention-only``, ``vanilla``, declared to :data:`sde.MODELS` by
the entry point ``covsde.models``); :mod:`finite.unshaped.layers` their finite maps,
registered by model type like the shaped ones (:mod:`finite.layers`) when
:mod:`finite.sample` is imported. Only the models are imported here (no numba).
"""
from .models import (ATTENTIONS, AttentionOnly, LayerNorm, PostLN, PreLN, PreNorm, ReLUMLP, Residual,
                     SoftmaxAttention, Vanilla)

__all__ = ["ATTENTIONS", "AttentionOnly", "LayerNorm", "PostLN", "PreLN", "PreNorm", "ReLUMLP",
           "Residual", "SoftmaxAttention", "Vanilla"]
