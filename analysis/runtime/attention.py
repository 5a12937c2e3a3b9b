"""The one attention function the Atlas registers with transformers: the model's own code, plus a per-call record.

``transformers.AttentionInterface`` lets a model call a registered function for its attention, and passes it
every extra keyword given to ``model(...)``. The Atlas registers ``atlas`` (with the eager mask): when the call
carries an ``atlas_call`` keyword (a ``CallRecord``), it edits and keeps the call's sites inside attention
(``analysis.runtime.sites``): ``q``, ``k``, ``v`` as the attention receives them, ``pattern`` and
``head_output`` (z, [batch, query, heads, head_dim], just before the output projection; head edits act here).

Patterns are quadratic in the text's length, so a call either keeps them (short texts), hands each layer's
weights to ``on_pattern`` and lets them go (pooling, scores, streaming), or stops right after the one layer it
needs (``stop_after_layer``). A call that needs no weights runs the library's fused attention
(``transformers.integrations.sdpa_attention``, PyTorch's scaled_dot_product_attention) with the same additive
mask, which is several times faster on long texts; soft-capped attention (Gemma 2) has no fused kernel and stays
eager. Without ``atlas_call`` the function is plain eager attention.

The record is created for one call and dropped after it, so nothing is installed on the shared model and
concurrent callers with different edits each get their own answer. The stream sites (``resid_pre``,
``mlp_out`` …) are read by hooks that see the same record (``analysis.runtime.site_hooks``).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from analysis.runtime.interventions import EditTensors, SiteEdit, StreamingEdit
from analysis.runtime.sites import SiteFilter

ATTENTION_NAME = "atlas"
CALL_KEYWORD = "atlas_call"


class StopForward(Exception):
    """Raised inside a forward once the layer a caller needed has run: the rest of the model is skipped."""


def keep_nothing(_site: str, _layer: int) -> bool:
    """The default site filter."""
    return False


@dataclass
class CallRecord:
    """What one forward call edits and keeps; filled in as the model's modules run."""

    layer_of: dict[int, int]  # id(attention module) -> layer index
    edits: EditTensors | None = None
    keep: SiteFilter = keep_nothing
    site_edits: dict[tuple[str, int], tuple[SiteEdit, ...]] = field(default_factory=dict)
    grad: bool = False  # keep gradients of the kept sites (retain_grad)
    stream_grad: bool = False  # make the first layer's input a leaf that needs gradients
    position_offset: int = 0  # position of the first query (generation with a KV cache)
    on_pattern: Callable[[int, torch.Tensor], None] | None = None  # called with (layer, weights) as each runs
    key_readout: torch.Tensor | None = None  # [keys, c]: columns every layer's attention also reads (A · R)
    on_key_readout: Callable[[int, torch.Tensor], None] | None = None  # (layer, A · R [b, query, heads, c])
    causal_layers: frozenset[int] = frozenset()  # layers whose mask is exactly causal: the fused kernel's own
    streaming: StreamingEdit | None = None  # heads restricted to sink + window keys (a per-head mask)
    stop_after_layer: int | None = None  # raise StopForward once this layer's attention has run
    store: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)  # (site, layer) -> tensor
    call_order: list[int] = field(default_factory=list)  # id(module) of each attention call, in order

    def at_site(self, site: str, layer: int, tensor: torch.Tensor) -> torch.Tensor:
        """Apply this call's edits of (site, layer) to ``tensor`` and keep it if asked; returns the tensor to use."""
        for edit in self.site_edits.get((site, layer), ()):
            tensor = edit.apply(tensor)
        if self.keep(site, layer):
            if self.grad and tensor.requires_grad and tensor.grad_fn is not None:
                tensor.retain_grad()
            self.store[(site, layer)] = tensor
        return tensor

    def needs_weights(self, layer: int) -> bool:
        """True if this call reads ``layer``'s attention weights (then the layer runs eager attention)."""
        return (self.on_pattern is not None or layer == self.stop_after_layer
                or self.keep("pattern", layer))

    def before_attention(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edit and keep one layer's q, k and v as its attention receives them."""
        layer = self.layer_of.get(id(module))
        if layer is None:
            return query, key, value
        return self.at_site("q", layer, query), self.at_site("k", layer, key), self.at_site("v", layer, value)

    def after_attention(self, module: torch.nn.Module, output: torch.Tensor,
                        weights: torch.Tensor | None) -> torch.Tensor:
        """Edit and record one layer's head outputs; returns the (possibly edited) output."""
        self.call_order.append(id(module))
        layer = self.layer_of.get(id(module))
        if layer is None:
            return output
        if self.edits is not None and layer in self.edits.active_layers:
            output = self.edits.apply(output, layer, self.position_offset)
        if weights is not None:
            self.at_site("pattern", layer, weights)
            if self.on_pattern is not None:
                self.on_pattern(layer, weights)
        output = self.at_site("head_output", layer, output)
        if layer == self.stop_after_layer:
            raise StopForward(layer)
        return output


def _model_eager_attention(module: torch.nn.Module) -> Callable:
    """The eager attention function of the module's own modeling file."""
    return sys.modules[type(module).__module__].eager_attention_forward


def atlas_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The module's own attention with the call's edits and records applied: eager, or fused when no weights
    are needed and the attention has no soft-cap."""
    record: CallRecord | None = kwargs.pop(CALL_KEYWORD, None)
    if record is None:
        return _model_eager_attention(module)(module, query, key, value, attention_mask, scaling=scaling,
                                              dropout=dropout, **kwargs)
    query, key, value = record.before_attention(module, query, key, value)
    layer = record.layer_of.get(id(module))
    fused = kwargs.get("softcap") is None and layer is not None and not record.needs_weights(layer)
    streaming = record.streaming is not None and layer in record.streaming.active_layers
    if streaming:  # per-head masks broadcast over the batch and heads in both the eager and the fused path
        attention_mask = record.streaming.mask(layer, None if attention_mask is None else
                                               attention_mask[:, :, :, :key.shape[-2]], query.shape[-2],
                                               key.shape[-2], record.position_offset, query.dtype)

    def attend(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if fused:  # an exactly causal mask is the kernel's own (is_causal), which is faster than a given one
            mask = None if layer in record.causal_layers and not streaming else attention_mask
            return sdpa_attention_forward(module, query, key, values, mask, dropout=dropout, scaling=scaling,
                                          **kwargs)
        return _model_eager_attention(module)(module, query, key, values, attention_mask, scaling=scaling,
                                              dropout=dropout, **kwargs)

    output, weights = attend(value)
    if record.key_readout is not None and layer is not None:
        record.on_key_readout(layer, _read_keys(attend, record.key_readout.to(value), value.shape))
    return record.after_attention(module, output, weights), weights


def _read_keys(attend: Callable, readout: torch.Tensor, value_shape: torch.Size) -> torch.Tensor:
    """A · R [b, query, heads, c] for key-side columns R [keys, c], read in value-wide chunks (the fused kernel
    needs values as wide as the heads; a narrower or wider value falls back to a slow kernel)."""
    batch, kv_heads, _, width = value_shape
    columns = readout.shape[1]
    padded = torch.nn.functional.pad(readout, (0, -columns % width))
    chunks = [attend(chunk[None, None].expand(batch, kv_heads, -1, -1))[0] for chunk in padded.split(width, dim=1)]
    return torch.cat(chunks, dim=-1)[..., :columns]


def register_attention() -> None:
    """Register the Atlas attention function and its (eager) mask with transformers; idempotent."""
    AttentionInterface.register(ATTENTION_NAME, atlas_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


register_attention()
