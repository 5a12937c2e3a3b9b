"""The one attention function the Atlas registers with transformers: the model's own eager code, plus a per-call record.

``transformers.AttentionInterface`` lets a model call a registered function for its attention, and passes it
every extra keyword given to ``model(...)``. The Atlas registers ``atlas`` (with the eager mask): it runs the
attention module's own ``eager_attention_forward`` and, when the call carries an ``atlas_call`` keyword (a
``CallRecord``), edits and records the named sites of that call:

- ``head_output`` (z): the attention result per query head, [batch, query, heads, head_dim], just before the
  output projection. Head edits act here.
- ``pattern``: the attention weights [batch, heads, query, key]. They are quadratic in the text's length, so
  a call either keeps them (short texts), hands each layer's weights to ``on_pattern`` and lets them go
  (pooling, scores, streaming), or stops right after the one layer it needs (``stop_after_layer``).

The record is created for one call and dropped after it, so nothing is installed on the shared model and
concurrent callers with different edits each get their own answer. Without ``atlas_call`` the function is
plain eager attention.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from analysis.runtime.interventions import EditTensors

ATTENTION_NAME = "atlas"
CALL_KEYWORD = "atlas_call"


class StopForward(Exception):
    """Raised inside a forward once the layer a caller needed has run: the rest of the model is skipped."""


@dataclass
class CallRecord:
    """What one forward call edits and keeps; filled in as the model's attention modules run."""

    layer_of: dict[int, int]  # id(attention module) -> layer index
    edits: EditTensors | None = None
    keep_patterns: bool = False
    keep_head_outputs: bool = False
    position_offset: int = 0  # position of the first query (generation with a KV cache)
    on_pattern: Callable[[int, torch.Tensor], None] | None = None  # called with (layer, weights) as each runs
    stop_after_layer: int | None = None  # raise StopForward once this layer's attention has run
    patterns: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, heads, query, key]
    head_outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, query, heads, head_dim]
    call_order: list[int] = field(default_factory=list)  # id(module) of each attention call, in order

    def after_attention(self, module: torch.nn.Module, output: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Edit and record one layer's head outputs; returns the (possibly edited) output."""
        self.call_order.append(id(module))
        layer = self.layer_of.get(id(module))
        if layer is None:
            return output
        if self.edits is not None and layer in self.edits.active_layers:
            output = self.edits.apply(output, layer, self.position_offset)
        if self.keep_patterns:
            self.patterns[layer] = weights
        if self.keep_head_outputs:
            self.head_outputs[layer] = output
        if self.on_pattern is not None:
            self.on_pattern(layer, weights)
        if layer == self.stop_after_layer:
            raise StopForward(layer)
        return output


def _model_eager_attention(module: torch.nn.Module) -> Callable:
    """The eager attention function of the module's own modeling file."""
    return sys.modules[type(module).__module__].eager_attention_forward


def atlas_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention of the module's own code, with the call's edits and records applied."""
    record: CallRecord | None = kwargs.pop(CALL_KEYWORD, None)
    output, weights = _model_eager_attention(module)(module, query, key, value, attention_mask, scaling=scaling,
                                                     dropout=dropout, **kwargs)
    if record is not None:
        output = record.after_attention(module, output, weights)
    return output, weights


def register_attention() -> None:
    """Register the Atlas attention function and its (eager) mask with transformers; idempotent."""
    AttentionInterface.register(ATTENTION_NAME, atlas_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


register_attention()
