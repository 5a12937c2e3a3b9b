"""Runs in which each node of the graph reads its own residual stream: what edge attribution and circuits need.

In a circuit (Conmy et al. 2023, ACDC; Hanna et al. 2024, EAP-IG) the stream a node reads is not the model's
one residual stream but a sum of upstream writes chosen per edge, so every head's query, key and value and
every MLP may read a different stream. This module runs the model's own layers that way, on the named sites of
``analysis.runtime.sites`` — nothing here re-implements a projection, a norm or the rotary embedding:

- a head's q / k / v from a stream of its own: the layer's attention run on that stream (one batch row per
  stream), stopped right after the attention, its q / k / v kept; then the layer's attention run again with
  each head's q, k and v replaced by the ones of its own stream (under grouped-query attention, k and v per
  KV head);
- an MLP's write from a stream of its own: the layer run with its attention's write replaced, on the stream
  that makes the MLP read exactly the given one.

Node order follows the forward pass: sources are ``input``, then per layer each head and the MLP; inputs are,
per layer, each query head's q, each KV head's k, then v, then the MLP's input, and last the logits' input (the
final stream). ``analysis.methods.circuit_graph`` names them.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Callable, Protocol, Sequence

import torch

from analysis.runtime.attention import CallRecord, StopForward
from analysis.runtime.cache import ActivationCache
from analysis.runtime.forward import head_input_grads, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import SiteEdit

WRITE_SITES = ("resid_pre", "head_output", "attn_out", "mlp_out", "resid_post")
ROW_BUDGET = 2 ** 24  # activation elements per batched call


@dataclass(frozen=True, eq=False)
class NodeWrites:
    """One unpatched run: every source node's write and the streams its nodes read."""

    writes: torch.Tensor  # [sources, tokens, d_model]: input, then per layer each head's write and the MLP's
    resid_pre: torch.Tensor  # [layers + 1, tokens, d_model]: the stream entering each layer; last: the final one
    attn_out: torch.Tensor  # [layers, tokens, d_model]: each attention's write
    mlp_out: torch.Tensor  # [layers, tokens, d_model]: each MLP's write
    last_logits: torch.Tensor  # [vocab]


@dataclass(frozen=True, eq=False)
class EdgePatch:
    """One downstream input reading its clean stream plus ``delta``: an exact edge patch.

    ``kind``: "q" (``head`` a query head), "k" / "v" (``head`` a KV head), "mlp" or "logits" (``layer`` ignored).
    """

    layer: int
    kind: str
    head: int
    delta: torch.Tensor  # [tokens, d_model]

    @property
    def start_layer(self) -> int:
        """The first layer whose computation differs from the clean run."""
        return self.layer if self.kind != "logits" else -1


def _writes_of(handle: ModelHandle, cache: ActivationCache, row: int = 0) -> list[torch.Tensor]:
    """Per layer: [heads + 1, tokens, d] — each head's write, then the MLP's, of one batch row."""
    return [torch.cat([cache.head_writes(layer)[row].transpose(0, 1), cache["mlp_out", layer][row][None].float()])
            for layer in range(handle.info.n_layers)]


def node_writes(handle: ModelHandle, input_ids: torch.Tensor) -> NodeWrites:
    """Run ``input_ids`` [1, tokens] once and read every node's write (they add up to the final stream, with the
    attention biases)."""
    cache = run_with_cache(handle, input_ids, sites=WRITE_SITES, last_logits=1)
    n_layers = handle.info.n_layers
    streams = [cache["resid_pre", layer][0] for layer in range(n_layers)] + [cache.final_stream[0]]
    writes = torch.cat([streams[0][None].float(), *_writes_of(handle, cache)])
    return NodeWrites(writes, torch.stack(streams).float(), cache.stack("attn_out")[:, 0].float(),
                      cache.stack("mlp_out")[:, 0].float(), cache.logits[0, -1])


def node_input_gradients(handle: ModelHandle, embedding: torch.Tensor,
                         metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """∂metric/∂(every node input) [inputs, tokens, d_model], the run starting from ``embedding`` [tokens, d].

    ``metric`` maps the last-position logits [1, 1, vocab] to a scalar. Heads: the gradient with respect to the
    stream as that head's q (or KV head's k, v) reads it; MLPs: as the MLP reads it; the logits: the final stream.
    """
    parts, n_layers = handle.parts, handle.info.n_layers
    ids = torch.zeros(1, embedding.shape[0], dtype=torch.long)  # the embedding replaces what the ids give
    start = SiteEdit("resid_pre", 0, embedding[None].detach())
    cache = run_with_cache(handle, ids, sites=("resid_pre", "q", "k", "v", "attn_out", "mlp_out", "resid_post"),
                           edits=[start], grad=True, last_logits=1)
    metric(cache.logits).backward(retain_graph=parts.parallel_residual)
    per_kind = {kind: head_input_grads(cache, kind)[:, :, 0] for kind in ("q", "k", "v")}  # [layers, heads, t, d]
    columns = []
    for layer in range(n_layers):
        columns += [per_kind["q"][layer], per_kind["k"][layer], per_kind["v"][layer]]
        post = cache.grad("resid_post", layer)
        if parts.parallel_residual:  # the MLP reads the layer's input: its own vector-Jacobian product
            (mlp,) = torch.autograd.grad(cache["mlp_out", layer], cache["resid_pre", layer], grad_outputs=post,
                                         retain_graph=True)
        else:  # the stream after attention feeds the MLP and, unchanged, the layer's output
            mlp = cache.grad("resid_mid", layer) - post
        columns.append(mlp[0][None])
    columns.append(cache.grad("resid_post", n_layers - 1)[0][None])
    return torch.cat(columns).detach().float()


def _attention_inputs(handle: ModelHandle, layer: int, streams: torch.Tensor) -> dict[str, torch.Tensor]:
    """q [n, H, t, e], k and v [n, K, t, e] of ``layer``'s attention reading each of ``streams`` [n, t, d].

    Equal streams are computed once (in a small circuit most inputs read the same ablated stream).
    """
    parts = handle.parts
    unique, inverse = torch.unique(streams.flatten(1), dim=0, return_inverse=True)
    record = CallRecord(parts.layer_of, keep=lambda site, at: at == layer and site in ("q", "k", "v"),
                        stop_after_layer=layer)
    with torch.inference_mode():
        try:
            parts.run_layers(unique.view(-1, *streams.shape[1:]).to(handle.device), layer, record)
        except StopForward:
            pass
    return {kind: record.store[kind, layer][inverse] for kind in ("q", "k", "v")}


def _one_layer(handle: ModelHandle, layer: int, residual: torch.Tensor, edits: Sequence[SiteEdit],
               keep: tuple[str, ...]) -> ActivationCache:
    """Run only ``layer`` from ``residual`` with ``edits``."""
    parts, info = handle.parts, handle.info
    wanted = frozenset(keep)
    by_site: dict[tuple[str, int], tuple[SiteEdit, ...]] = {}
    for edit in edits:
        by_site[edit.site, edit.layer] = by_site.get((edit.site, edit.layer), ()) + (edit,)
    record = CallRecord(parts.layer_of, keep=lambda site, at: at == layer and site in wanted, site_edits=by_site)
    with torch.inference_mode():
        parts.run_layers(residual.to(handle.device), layer, record, end=layer + 1)
    return ActivationCache(torch.empty(0), record.store, parts, info.n_heads, info.head_dim, layer)


def _replaced_qkv(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[SiteEdit]:
    """Edits putting q [b, H, t, e], k and v [b, K, t, e] in place of every head's own."""
    return [SiteEdit(kind, layer, tensor[:, head], head=head)
            for kind, tensor in (("q", q), ("k", k), ("v", v)) for head in range(tensor.shape[1])]


class NodeStreams(Protocol):
    """The stream each node input of a run reads, from the run's writes so far ``writes`` [rows, sources so far,
    t, d] (forward order, the input's write first)."""

    def heads(self, layer: int, writes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The streams each query head's q [rows, H, t, d] and each KV head's k and v [rows, K, t, d] read."""

    def mlp(self, layer: int, writes: torch.Tensor) -> torch.Tensor:
        """The stream the layer's MLP reads [rows, t, d] (``writes`` include the layer's heads)."""

    def final(self, writes: torch.Tensor) -> torch.Tensor:
        """The final stream the logits read [rows, t, d]."""


def node_input_logits(handle: ModelHandle, n_rows: int, clean: NodeWrites, streams: NodeStreams,
                      start_layer: int = 0) -> torch.Tensor:
    """Last-position logits [rows, vocab] of a run where every node input reads the stream ``streams`` gives.

    ``clean``: the clean run, whose input-node write every row shares. Below ``start_layer`` every row is the
    clean run (each input there reads all its upstream writes unchanged), so those layers' writes are the clean
    run's and the layer-by-layer run restarts at ``start_layer``.
    """
    info, parts = handle.info, handle.parts
    writes = torch.zeros(n_rows, *clean.writes.shape)
    filled = 1 + start_layer * (info.n_heads + 1)
    writes[:, :filled] = clean.writes[:filled].float()
    for layer in range(start_layer, info.n_layers):
        own = streams.heads(layer, writes[:, :filled])  # [rows, heads of the kind, t, d] for q, k, v
        stacked = torch.cat(own, dim=1)  # one attention call for every head's own stream
        computed = _attention_inputs(handle, layer, stacked.flatten(0, 1))
        width, offsets = stacked.shape[1], (0, own[0].shape[1], own[0].shape[1] + own[1].shape[1])
        qkv = []
        for kind, offset, tensor in zip(("q", "k", "v"), offsets, own):
            per_row = computed[kind].unflatten(0, (n_rows, width))  # [rows, streams, heads, t, e]
            heads = torch.arange(tensor.shape[1])
            qkv.append(per_row[:, offset + heads, heads])
        cache = _one_layer(handle, layer, own[0][:, 0], _replaced_qkv(layer, *qkv), ("head_output", "attn_out"))
        writes[:, filled:filled + info.n_heads] = cache.head_writes(layer).transpose(1, 2).float()
        filled += info.n_heads
        attention = cache["attn_out", layer]
        mlp_stream = streams.mlp(layer, writes[:, :filled])
        below = mlp_stream if parts.parallel_residual else mlp_stream - attention  # + attention = what the MLP reads
        mlp = _one_layer(handle, layer, below, [SiteEdit("attn_out", layer, attention)], ("mlp_out",))
        writes[:, filled] = mlp["mlp_out", layer].float()
        filled += 1
    final = streams.final(writes)
    with torch.inference_mode():
        return parts.readout(final[:, -1:].to(handle.device))[:, -1]


def _patched_rows(handle: ModelHandle, clean: NodeWrites, patches: Sequence[EdgePatch]) -> tuple[list[SiteEdit],
                                                                                                    list[int]]:
    """The site edits of patches that all start at one layer, one batch row each (heads: their q / k / v from the
    clean stream plus Δ; MLPs: their write on the clean stream plus Δ)."""
    layer = patches[0].layer
    clean_stream = clean.resid_pre[layer]
    edits: list[SiteEdit] = []
    heads = [row for row, patch in enumerate(patches) if patch.kind in ("q", "k", "v")]
    if heads:
        qkv = _attention_inputs(handle, layer, torch.stack([clean_stream + patches[row].delta for row in heads]))
        for (kind, head), group in groupby(sorted(heads, key=lambda row: (patches[row].kind, patches[row].head)),
                                           key=lambda row: (patches[row].kind, patches[row].head)):
            rows = list(group)
            positions = [heads.index(row) for row in rows]
            edits.append(SiteEdit(kind, layer, qkv[kind][positions, head], head=head, rows=tuple(rows)))
    mlps = [row for row, patch in enumerate(patches) if patch.kind == "mlp"]
    if mlps:
        reads = clean_stream + (0 if handle.parts.parallel_residual else clean.attn_out[layer])
        below = torch.stack([reads + patches[row].delta for row in mlps])
        below = below if handle.parts.parallel_residual else below - clean.attn_out[layer]
        written = _one_layer(handle, layer, below, [SiteEdit("attn_out", layer, clean.attn_out[layer][None])],
                             ("mlp_out",))["mlp_out", layer]
        edits.append(SiteEdit("mlp_out", layer, written, rows=tuple(mlps)))
    return edits, heads + mlps


def rows_per_call(handle: ModelHandle, n_tokens: int) -> int:
    """How many patched rows share one batched call."""
    info = handle.info
    return max(1, ROW_BUDGET // (n_tokens * (4 * info.d_model + info.n_heads * n_tokens)))


def edge_patched_logits(handle: ModelHandle, clean: NodeWrites, clean_ids: torch.Tensor,
                        patches: Sequence[EdgePatch], restart: bool = True,
                        progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Last-position logits [patches, vocab] of the clean run with each patch alone.

    With ``restart``, patches at the same layer share a batched call that starts at that layer from the clean
    stream; without, each patch is one full forward from the tokens (the reference the restart must equal).
    ``progress(done, total)`` is called after each call.
    """
    logits = torch.zeros(len(patches), clean.last_logits.shape[-1])
    order = sorted(range(len(patches)), key=lambda index: patches[index].start_layer)
    chunk = rows_per_call(handle, clean.writes.shape[1]) if restart else 1
    done = 0
    for start, group in groupby(order, key=lambda index: patches[index].start_layer):
        indices = list(group)
        for first in range(0, len(indices), chunk):
            rows = indices[first:first + chunk]
            logits[rows] = _patched_logits(handle, clean, clean_ids, [patches[index] for index in rows], start,
                                           restart).float()
            done += len(rows)
            if progress is not None:
                progress(done, len(patches))
    return logits


def _patched_logits(handle: ModelHandle, clean: NodeWrites, clean_ids: torch.Tensor, patches: Sequence[EdgePatch],
                    start: int, restart: bool) -> torch.Tensor:
    if start < 0:  # into the logits: the final stream plus Δ, read out
        with torch.inference_mode():
            final = clean.resid_pre[-1][None] + torch.stack([patch.delta for patch in patches])
            return handle.parts.readout(final[:, -1:].to(handle.device))[:, -1]
    edits, _ = _patched_rows(handle, clean, patches)
    batch = len(patches)
    if restart:
        cache = run_with_cache(handle, clean_ids, edits=edits, start_layer=start,
                               start_residual=clean.resid_pre[start][None].expand(batch, -1, -1), last_logits=1)
    else:
        cache = run_with_cache(handle, clean_ids.expand(batch, -1), edits=edits, last_logits=1)
    return cache.logits[:, -1]
