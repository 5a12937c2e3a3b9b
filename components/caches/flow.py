"""Rollout and flow, and direct logit attribution, cached under the one memory budget and keyed by
(model, text, cap, options)."""
from __future__ import annotations

import torch

from analysis.memory_budget import memoise
from analysis.methods.logit_attribution import ResidualDecomposition, decompose
from analysis.methods.rollout import Flow, trace_flow
from components.caches.models import cached_model, cached_trace, with_spinner

Heads = tuple[tuple[int, int], ...] | None


@memoise(on_miss=with_spinner("Following the attention through the layers…"))
def cached_flow(model: str, text: str, max_tokens: int, heads: Heads, exclude_sink: bool, layer: int, position: int,
                rows: tuple[int, int], threshold: float, focus: bool) -> Flow:
    """Rollout rows ``rows`` = (first, stop), flow masses and flow edges after ``layer`` (one layer's patterns in
    memory at a time)."""
    trace = cached_trace(model, text, max_tokens)
    return trace_flow(trace.layer_patterns, trace.n_heads, layer, position, range(*rows), heads, exclude_sink,
                      threshold, focus)


@memoise(on_miss=with_spinner("Splitting the residual stream into head writes…"))
def cached_decomposition(model: str, text: str, max_tokens: int, position: int) -> ResidualDecomposition:
    """The final residual stream at ``position`` split into embedding, head, bias and MLP writes."""
    ids = torch.from_numpy(cached_trace(model, text, max_tokens).token_ids.copy())[None]
    return decompose(cached_model(model), ids, position)
