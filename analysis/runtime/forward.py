"""One forward pass on the model's own code, with head edits and records passed in as data.

This is the only code that runs a model for analysis. Edits travel with the call (the ``atlas_call`` keyword
read by ``analysis.runtime.attention``), so nothing is installed on the shared model and concurrent callers
with different edits each get their own answer. A run can start at a later layer from a cached residual
stream (heads of layer l cannot change anything below l), which makes all-heads ablation and patching cheap;
where the architecture does not allow that restart (``ModelParts.supports_restart``) the full forward runs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from analysis.runtime.attention import CALL_KEYWORD, CallRecord, StopForward
from analysis.runtime.cache import ActivationCache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import Edits, EditTensors, SiteEdit, StreamingEdit
from analysis.runtime.site_hooks import recording
from analysis.runtime.sites import HEAD_SITES, SiteFilter, SiteSelection, site_filter


CHECKPOINT_TOKENS = 1024


class InterventionsUnsupported(RuntimeError):
    """The model's attention cannot be edited (it does not use transformers' attention interface)."""


def check_editable(handle: ModelHandle) -> None:
    """Raise InterventionsUnsupported with the reason unless the model's heads can be edited."""
    if not handle.parts.supports_interventions:
        raise InterventionsUnsupported(" ".join(handle.parts.notes) or f"{handle.info.name} cannot be edited.")


def run_patterns(handle: ModelHandle, input_ids: torch.Tensor, keep_head_outputs: bool = False) -> ActivationCache:
    """Logits and every layer's pattern of any model: through ``run_with_cache`` when its heads can be edited,
    else from the library's ``output_attentions`` (then without head outputs)."""
    if handle.parts.supports_interventions:
        return run_with_cache(handle, input_ids, sites=("pattern", "head_output") if keep_head_outputs
                              else ("pattern",))
    with torch.inference_mode():
        output = handle.model(input_ids.to(handle.device), output_attentions=True)
    logits = output.logits if handle.parts.causal else output.last_hidden_state
    store = {("pattern", layer): weights for layer, weights in enumerate(output.attentions)}
    return ActivationCache(logits, store, handle.parts, handle.info.n_heads, handle.info.head_dim)


def _expanded(keep: SiteFilter) -> SiteFilter:
    """The filter the hooks use: derived sites keep what they are computed from."""
    def wanted(site: str, layer: int) -> bool:
        if keep(site, layer):
            return True
        if site == "resid_pre":
            return keep("attn_in", layer) or keep("resid_mid", layer)
        return site == "attn_out" and keep("resid_mid", layer)
    return wanted


def _split_edits(edits: Edits | EditTensors | Sequence[SiteEdit] | None
                 ) -> tuple[EditTensors | None, tuple[SiteEdit, ...], StreamingEdit | None]:
    if edits is None:
        return None, (), None
    if isinstance(edits, EditTensors):
        return edits, (), None
    if isinstance(edits, Edits):
        return edits.heads, edits.sites, edits.streaming
    return None, tuple(edits), None


def run_with_cache(
    handle: ModelHandle,
    input_ids: torch.Tensor,
    *,
    sites: SiteSelection = (),
    edits: Edits | EditTensors | Sequence[SiteEdit] | None = None,
    grad: bool = False,
    start_layer: int = 0,
    start_residual: torch.Tensor | None = None,
    last_logits: int | None = None,
    on_pattern: Callable[[int, torch.Tensor], None] | None = None,
    key_readout: torch.Tensor | None = None,
    on_key_readout: Callable[[int, torch.Tensor], None] | None = None,
) -> ActivationCache:
    """Run ``input_ids`` [1 or batch, tokens] on the model's own code, with ``edits``, keeping ``sites``.

    ``sites``: site names (kept at every layer run) or a predicate ``(site, layer) -> bool``; ``pattern`` is
    quadratic, ask for it only on short texts (or pass ``on_pattern(layer, weights)``, which sees each layer's
    weights as it runs). ``edits``: head edits (``EditTensors``, one batch row each), ``SiteEdit``s, or both
    (``Edits``); the batch is the largest of the edits', the ids' and the start residual's.
    With ``start_layer`` > 0, ``start_residual`` is the residual stream entering that layer; if the model does
    not allow a restart, the full forward runs instead (same numbers, same layers kept). ``last_logits`` = n
    unembeds only the last n positions. With ``grad``, kept sites keep their gradients (``cache.grad``) and the
    stream entering the first layer run becomes a leaf needing them; on texts longer than ``CHECKPOINT_TOKENS``
    with no sites kept, layers are checkpointed (one layer's attention in memory during the backward pass).
    Layers that need no attention weights run the library's fused attention. ``key_readout`` [tokens, c] are
    columns every layer's attention also reads as if they were its values: ``on_key_readout(layer, A · R)``
    gets [b, tokens, heads, c] (block means of the pattern, e.g., without the quadratic pattern).
    """
    check_editable(handle)
    parts = handle.parts
    head_edits, site_edits, streaming = _split_edits(edits)
    batch = max(input_ids.shape[0], head_edits.batch if head_edits is not None else 1,
                streaming.heads.shape[0] if streaming is not None else 1,
                start_residual.shape[0] if start_residual is not None else 1)
    keeps_sites = not (sites is None or (not callable(sites) and not tuple(sites)))
    by_site: dict[tuple[str, int], tuple[SiteEdit, ...]] = {}
    for edit in site_edits:
        by_site[edit.site, edit.layer] = by_site.get((edit.site, edit.layer), ()) + (edit,)
    record = CallRecord(parts.layer_of, head_edits, _expanded(site_filter(sites)), by_site, grad=grad,
                        stream_grad=grad and keeps_sites, on_pattern=on_pattern, key_readout=key_readout,
                        on_key_readout=on_key_readout, causal_layers=parts.causal_layers, streaming=streaming)
    checkpoint = grad and parts.supports_restart and input_ids.shape[1] > CHECKPOINT_TOKENS and not keeps_sites
    if checkpoint and start_layer == 0:  # the stream entering layer 0, from a forward without gradients
        start_residual = run_with_cache(handle, input_ids[:1], sites=lambda site, layer: site == "resid_pre" and
                                        layer == 0, last_logits=1)["resid_pre", 0].clone()
    restart = (start_layer > 0 or checkpoint) and parts.supports_restart
    with torch.enable_grad() if grad else torch.inference_mode():
        if restart:
            residual = start_residual.to(handle.device)
            residual = residual.expand(batch, *residual.shape[1:]) if residual.shape[0] != batch else residual
            if grad and residual.is_inference():  # a stream kept by a run without gradients
                residual = residual.clone()
            final = parts.run_layers(residual, start_layer, record, checkpoint=checkpoint)
            logits = parts.readout(final if last_logits is None else final[:, -last_logits:])
        else:
            ids = input_ids.to(handle.device)
            ids = ids.expand(batch, -1) if ids.shape[0] != batch else ids
            keep = {"logits_to_keep": last_logits} if last_logits and parts.causal else {}
            with recording(record):
                output = handle.model(ids, use_cache=False, **keep, **{CALL_KEYWORD: record})
            logits = output.logits if parts.causal else output.last_hidden_state
    store = {key: value for key, value in record.store.items() if key[1] >= start_layer}
    return ActivationCache(logits, store, parts, handle.info.n_heads, handle.info.head_dim, start_layer)


def head_input_grads(cache: ActivationCache, kind: str) -> torch.Tensor:
    """∂metric/∂(resid_pre of each layer as each head's ``kind`` ∈ q, k, v reads it): [layers, heads, b, t, d].

    ``cache`` is a run with ``grad=True`` keeping ``resid_pre`` and ``kind``, after ``metric.backward()``. Per
    layer, the layer's attention inputs are recomputed from its cached input by the model's own norm,
    projection and rotary code (one copy of the stream per head, stopped right after the attention), and one
    vector-Jacobian product carries each head's slice of the gradient of ``kind`` back to its own copy.
    Heads are query heads for q and key/value heads for k and v.
    """
    if kind not in HEAD_SITES:
        raise ValueError(f"kind must be one of {', '.join(sorted(HEAD_SITES))}, got {kind!r}")
    parts = cache.parts
    if not parts.supports_restart:
        raise InterventionsUnsupported("Per-head input gradients need the layer restart: " + " ".join(parts.notes))
    layers = cache.layers(kind)
    grads = []
    for layer in layers:
        upstream = cache.grad(kind, layer)  # [b, heads, t, e]
        stream = cache["resid_pre", layer].detach()
        batch, heads = stream.shape[0], upstream.shape[1]
        copies = stream.repeat(heads, 1, 1).requires_grad_()  # copy h·b + row: the stream as head h reads it
        record = CallRecord(parts.layer_of, keep=lambda site, at, layer=layer: site == kind and at == layer,
                            stop_after_layer=layer)
        with torch.enable_grad():
            try:
                parts.run_layers(copies, layer, record)
            except StopForward:
                pass
            received = record.store[kind, layer]  # [heads·b, heads, t, e]
            own = torch.zeros_like(received)
            for head in range(heads):
                own[head * batch:(head + 1) * batch, head] = upstream[:, head]
            (gradient,) = torch.autograd.grad(received, copies, grad_outputs=own)
        grads.append(gradient.view(heads, batch, *stream.shape[1:]))
    return torch.stack(grads)


def layer_attention(handle: ModelHandle, input_ids: torch.Tensor, layer: int, residual: torch.Tensor | None = None,
                    edits: EditTensors | None = None) -> torch.Tensor:
    """One layer's attention weights [batch, heads, query, key], running no more of the model than needed.

    With ``residual`` (the stream entering ``layer``) and a model that allows the restart, only that layer's
    attention runs; otherwise a forward from the tokens, with the ``edits`` that made that residual (one batch
    row), that stops right after the layer. View-only models give the library's ``output_attentions``.
    """
    parts = handle.parts
    if not parts.supports_interventions:
        return run_patterns(handle, input_ids)["pattern", layer]
    record = CallRecord(parts.layer_of, edits, keep=lambda site, at: site == "pattern" and at == layer,
                        stop_after_layer=layer)
    with torch.inference_mode():
        try:
            if residual is not None and parts.supports_restart:
                parts.run_layers(residual.to(handle.device), layer, record)
            else:
                with recording(record):
                    handle.model(input_ids.to(handle.device), use_cache=False, **{CALL_KEYWORD: record})
        except StopForward:
            pass
    return record.store["pattern", layer]


def generate_greedy(handle: ModelHandle, input_ids: torch.Tensor, edits: Edits | EditTensors | None,
                    n_tokens: int) -> list[int]:
    """The ``n_tokens`` greedy next tokens of ``input_ids`` [1, tokens] with ``edits`` (one row) at every step.

    Runs the model's own forward with its KV cache, so each new token costs one position; the edits travel
    with every call, and the record's position offset tells position-bound edits where each step's query is.
    """
    check_editable(handle)
    head_edits, site_edits, streaming = _split_edits(edits)
    if site_edits:
        raise ValueError("Generation takes head edits and streaming heads, not site edits.")
    record = CallRecord(handle.parts.layer_of, head_edits if head_edits is not None and head_edits.active_layers
                        else None, causal_layers=handle.parts.causal_layers, streaming=streaming)
    ids, cache, generated = input_ids.to(handle.device), None, []
    with torch.inference_mode(), recording(record):
        for _ in range(n_tokens):
            output = handle.model(ids, cache=cache, use_cache=True, **{CALL_KEYWORD: record})
            record.position_offset += ids.shape[1]
            cache, next_id = output.cache, int(output.logits[0, -1].argmax())
            generated.append(next_id)
            ids = torch.tensor([[next_id]], device=handle.device)
    return generated
