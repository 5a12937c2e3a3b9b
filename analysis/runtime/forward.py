"""One forward pass on the model's own code, with head edits and records passed in as data.

This is the only code that runs a model for analysis. Edits travel with the call (the ``atlas_call`` keyword
read by ``analysis.runtime.attention``), so nothing is installed on the shared model and concurrent callers
with different edits each get their own answer. A run can start at a later layer from a cached residual
stream (heads of layer l cannot change anything below l), which makes all-heads ablation and patching cheap;
where the architecture does not allow that restart (``ModelParts.supports_restart``) the full forward runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from analysis.runtime.attention import CALL_KEYWORD, CallRecord, StopForward
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import EditTensors


CHECKPOINT_TOKENS = 1024


class InterventionsUnsupported(RuntimeError):
    """The model's attention cannot be edited (it does not use transformers' attention interface)."""


@dataclass
class ForwardResult:
    """What a forward kept: logits (hidden states for encoders) and optional per-layer tensors."""

    logits: torch.Tensor  # [batch, tokens, vocab] (encoders: [batch, tokens, d_model])
    patterns: list[torch.Tensor] = field(default_factory=list)  # per layer run: [batch, heads, query, key]
    residuals: list[torch.Tensor] = field(default_factory=list)  # the stream entering each layer run
    head_outputs: list[torch.Tensor] = field(default_factory=list)  # per layer run: z [batch, query, heads, hd]


def check_editable(handle: ModelHandle) -> None:
    """Raise InterventionsUnsupported with the reason unless the model's heads can be edited."""
    if not handle.parts.supports_interventions:
        raise InterventionsUnsupported(" ".join(handle.parts.notes) or f"{handle.info.name} cannot be edited.")


def run_patterns(handle: ModelHandle, input_ids: torch.Tensor, keep_head_outputs: bool = False) -> ForwardResult:
    """Logits and every layer's pattern of any model: through ``run_model`` when its heads can be edited, else
    from the library's ``output_attentions`` (then without head outputs)."""
    if handle.parts.supports_interventions:
        return run_model(handle, input_ids, keep_patterns=True, keep_head_outputs=keep_head_outputs)
    with torch.inference_mode():
        output = handle.model(input_ids.to(handle.device), output_attentions=True)
    logits = output.logits if handle.parts.causal else output.last_hidden_state
    return ForwardResult(logits=logits, patterns=list(output.attentions))


def run_model(
    handle: ModelHandle,
    input_ids: torch.Tensor,
    edits: EditTensors | None = None,
    *,
    keep_patterns: bool = False,
    keep_residuals: bool = False,
    keep_head_outputs: bool = False,
    start_layer: int = 0,
    start_residual: torch.Tensor | None = None,
    grad: bool = False,
    last_logits: int | None = None,
    on_pattern: Callable[[int, torch.Tensor], None] | None = None,
) -> ForwardResult:
    """Run ``input_ids`` [1 or batch, tokens] with ``edits`` (one batch row each) on the model's own code.

    With ``start_layer`` > 0, ``start_residual`` is the residual stream entering that layer; if the model
    does not allow a restart, the full forward runs instead (same numbers, same layers kept).
    ``last_logits`` = n unembeds only the last n positions (a large vocabulary's unembedding can cost more
    than all the layers). ``on_pattern(layer, weights)`` sees each layer's attention weights as it runs (for
    scores or pooling that must not keep every layer's quadratic pattern). With ``grad`` on texts longer
    than ``CHECKPOINT_TOKENS``, layers are checkpointed (recomputed during the backward pass), so the memory
    for gradients holds one layer's attention at a time instead of every layer's.
    """
    check_editable(handle)
    parts = handle.parts
    batch = edits.batch if edits is not None else input_ids.shape[0]
    record = CallRecord(parts.layer_of, edits, keep_patterns, keep_head_outputs, on_pattern=on_pattern)
    checkpoint = grad and parts.supports_restart and input_ids.shape[1] > CHECKPOINT_TOKENS and not keep_patterns
    if checkpoint and start_layer == 0:  # the stream entering layer 0, from a forward without gradients
        start_residual = run_model(handle, input_ids[:1], keep_residuals=True, last_logits=1).residuals[0].clone()
    restart = (start_layer > 0 or checkpoint) and parts.supports_restart
    result = ForwardResult(logits=torch.empty(0))
    with torch.enable_grad() if grad else torch.inference_mode():
        if restart:
            residual = start_residual.to(handle.device)
            residual = residual.expand(batch, *residual.shape[1:]) if residual.shape[0] != batch else residual
            final = parts.run_layers(residual, start_layer, record, result.residuals if keep_residuals else None,
                                     checkpoint=checkpoint)
            result.logits = parts.readout(final if last_logits is None else final[:, -last_logits:])
        else:
            ids = input_ids.to(handle.device)
            ids = ids.expand(batch, -1) if ids.shape[0] != batch else ids
            keep = {"logits_to_keep": last_logits} if last_logits and parts.causal else {}
            output = handle.model(ids, output_hidden_states=keep_residuals, use_cache=False, **keep,
                                  **{CALL_KEYWORD: record})
            result.logits = output.logits if parts.causal else output.last_hidden_state
            if keep_residuals:
                result.residuals = list(output.hidden_states[start_layer:parts.n_layers])
    kept = range(start_layer, parts.n_layers)  # the same layers whether or not the model allowed a restart
    result.patterns = [record.patterns[layer] for layer in kept if layer in record.patterns]
    result.head_outputs = [record.head_outputs[layer] for layer in kept if layer in record.head_outputs]
    return result


def layer_attention(handle: ModelHandle, input_ids: torch.Tensor, layer: int, residual: torch.Tensor | None = None,
                    edits: EditTensors | None = None) -> torch.Tensor:
    """One layer's attention weights [batch, heads, query, key], running no more of the model than needed.

    With ``residual`` (the stream entering ``layer``) and a model that allows the restart, only that layer's
    attention runs; otherwise a forward from the tokens, with the ``edits`` that made that residual (one batch
    row), that stops right after the layer. View-only models give the library's ``output_attentions``.
    """
    parts = handle.parts
    if not parts.supports_interventions:
        return run_patterns(handle, input_ids).patterns[layer]
    record = CallRecord(parts.layer_of, edits, keep_patterns=True, stop_after_layer=layer)
    with torch.inference_mode():
        try:
            if residual is not None and parts.supports_restart:
                parts.run_layers(residual.to(handle.device), layer, record)
            else:
                handle.model(input_ids.to(handle.device), use_cache=False, **{CALL_KEYWORD: record})
        except StopForward:
            pass
    return record.patterns[layer]
