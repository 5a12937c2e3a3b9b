"""Streaming heads (Xiao et al. 2024, "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and
Streaming Heads"; Tang et al. 2024, RazorAttention): heads that lose almost nothing when they may see only the
first ``sink`` tokens and the last ``window`` tokens.

Per head, on a long text: the change of the mean next-token loss, and the relative change of the final residual
stream, when only that head is restricted (``StreamingEdit``, renormalised over the kept keys). The heads of one
layer run as batch rows from the clean stream entering that layer (nothing below it can change). Heads whose
change is tiny are streaming heads; restricting them all at once shows what a sink + window KV cache for them
costs, and what it saves: a KV head's cache shrinks to sink + window entries when every query head that reads it
is a streaming head.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.heads import heads_frame
from analysis.methods.metrics import token_loss
from analysis.runtime.forward import check_editable, run_with_cache
from analysis.runtime.handle import ModelHandle, ModelInfo
from analysis.runtime.interventions import DEFAULT_SINK, DEFAULT_WINDOW, Edits, streaming_edit

STREAMING_THRESHOLD = 0.01  # nats of mean loss: a head restricted with less change than this is a streaming head
ROWS_PER_RUN = 3  # heads restricted side by side (batch rows) per run: the per-head masks are [rows, H, t, t]


def _final_stream(handle: ModelHandle):
    last = handle.info.n_layers - 1
    return lambda site, layer: site == "resid_post" and layer == last


def streaming_scores(handle: ModelHandle, input_ids: torch.Tensor, sink: int = DEFAULT_SINK,
                     window: int = DEFAULT_WINDOW,
                     on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per head: ``delta_loss`` (mean next-token loss restricted − clean) and ``hidden_change`` (mean over
    positions of |final stream change| / |final stream|) when only that head sees sink + window keys."""
    check_editable(handle)
    if not handle.info.causal:
        raise ValueError("Streaming heads need a causal language model (a loss over the text).")
    info = handle.info
    final = _final_stream(handle)
    clean = run_with_cache(handle, input_ids, sites=lambda site, layer: site == "resid_pre" or final(site, layer))
    clean_loss = token_loss(clean.logits, input_ids).mean()
    clean_final = clean.final_stream[0].float()
    delta, change = np.zeros((info.n_layers, info.n_heads)), np.zeros((info.n_layers, info.n_heads))
    for layer in range(info.n_layers):
        for first in range(0, info.n_heads, ROWS_PER_RUN):
            heads = list(range(first, min(first + ROWS_PER_RUN, info.n_heads)))
            edit = streaming_edit([[(layer, head)] for head in heads], info.n_layers, info.n_heads, sink, window)
            run = run_with_cache(handle, input_ids, sites=final, edits=Edits(streaming=edit), start_layer=layer,
                                 start_residual=clean["resid_pre", layer])
            delta[layer, heads] = (token_loss(run.logits, input_ids).mean(1) - clean_loss).numpy()
            moved = (run.final_stream.float() - clean_final).norm(dim=-1) / clean_final.norm(dim=-1)
            change[layer, heads] = moved.mean(1).numpy()
        if on_progress is not None:
            on_progress(layer + 1, info.n_layers)
    return heads_frame(info.n_layers, info.n_heads, delta_loss=delta, hidden_change=change)


def restrict_heads(handle: ModelHandle, input_ids: torch.Tensor, heads: Sequence[tuple[int, int]],
                   sink: int = DEFAULT_SINK, window: int = DEFAULT_WINDOW) -> float:
    """The change of the mean next-token loss when all ``heads`` at once see only sink + window keys."""
    check_editable(handle)
    info = handle.info
    clean = token_loss(run_with_cache(handle, input_ids).logits, input_ids).mean()
    if not heads:
        return 0.0
    edit = streaming_edit([list(heads)], info.n_layers, info.n_heads, sink, window)
    restricted = token_loss(run_with_cache(handle, input_ids, edits=Edits(streaming=edit)).logits, input_ids).mean()
    return float(restricted - clean)


def kv_cache_bytes(info: ModelInfo, heads: Sequence[tuple[int, int]], n_tokens: int, sink: int = DEFAULT_SINK,
                   window: int = DEFAULT_WINDOW, bytes_per_value: int = 2) -> tuple[int, int]:
    """(the KV cache's bytes for ``n_tokens``, the bytes saved when the KV heads all of whose query heads are in
    ``heads`` keep only sink + window entries), at ``bytes_per_value`` (2: 16-bit)."""
    per_entry = 2 * info.head_dim * bytes_per_value  # one key and one value
    total = info.n_layers * info.n_kv_heads * n_tokens * per_entry
    group = info.n_heads // info.n_kv_heads
    chosen = set(heads)
    kept = min(n_tokens, sink + window)
    saved = sum((n_tokens - kept) * per_entry
                for layer in range(info.n_layers) for kv in range(info.n_kv_heads)
                if all((layer, kv * group + member) in chosen for member in range(group)))
    return total, saved
