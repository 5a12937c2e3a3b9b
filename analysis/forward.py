"""One forward pass, layer by layer, with head interventions passed in as data.

This is the only code that runs a model for analysis. It reads the shared model's weights and
never changes them: no hooks, no module attributes, so concurrent callers with different
interventions each get their own answer. It can start at a later layer from a cached residual
stream (heads of layer l cannot change anything below l), which makes all-heads ablation cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from analysis.handle import ModelHandle
from analysis.interventions import EditTensors, apply_edits


class InterventionsUnsupported(RuntimeError):
    """The model's architecture has no adapter, so heads cannot be edited (viewing still works)."""


@dataclass
class ForwardResult:
    """What a forward kept: logits (hidden states for encoders) and optional per-layer tensors."""

    logits: torch.Tensor  # [batch, tokens, vocab] (encoders: [batch, tokens, d_model])
    patterns: list[torch.Tensor] = field(default_factory=list)  # per layer [batch, heads, q, k]
    residuals: list[torch.Tensor] = field(default_factory=list)  # input of each layer, then the final stream
    head_outputs: list[torch.Tensor] = field(default_factory=list)  # per layer z [batch, heads, q, head_dim]


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
) -> ForwardResult:
    """Run ``input_ids`` [1 or batch, tokens] through the model with ``edits`` (one batch row each).

    With ``start_layer`` > 0, ``start_residual`` is the residual stream entering that layer.
    """
    adapter = handle.adapter
    if not adapter.supports_interventions:
        raise InterventionsUnsupported(
            f"{handle.info.architecture} has no head-level adapter: views work, interventions do not."
        )
    batch = edits.batch if edits is not None else input_ids.shape[0]
    with torch.enable_grad() if grad else torch.inference_mode():
        if start_layer == 0:
            residual = adapter.embed(input_ids.to(handle.device))
        else:
            residual = start_residual
        if residual.shape[0] != batch:
            residual = residual.expand(batch, *residual.shape[1:])
        ctx = adapter.context(residual)
        result = ForwardResult(logits=residual)
        for index in range(start_layer, len(adapter.layers)):
            if keep_residuals:
                result.residuals.append(residual)
            z, pattern = adapter.attend(index, residual, ctx)
            if edits is not None and index in edits.active_layers:
                z = apply_edits(z, edits, index)
            if keep_patterns:
                result.patterns.append(pattern)
            if keep_head_outputs:
                result.head_outputs.append(z)
            residual = adapter.finish(index, residual, z)
        if keep_residuals:
            result.residuals.append(residual)
        result.logits = adapter.readout(residual)
    return result

