"""Why a head attends from token i to token j: its attention logit split into query-side × key-side terms.

The stream entering layer l at any position is a sum of writes: the embeddings (``input``), every earlier
head (``L{l}H{h}``), every earlier MLP (``MLP{l}``) and the attention-output biases. The head's query at i and
key at j are affine maps of those streams once every norm's scale is frozen at the clean run — the layer's input
norm, a per-head q/k norm (Qwen3, Gemma 3, OLMo 2) and Gemma's attention-output norm — followed by the model's
own rotary embedding, which is linear at a fixed position. So ``q_i = Σ_a Q_a + c_q`` and ``k_j = Σ_b K_b + c_k``
(the constants from projection and norm biases join the attention biases as one ``bias`` component), and the
logit ``s_ij = scaling · q_i·k_j = Σ_a Σ_b scaling · Q_a·K_b`` splits into bilinear terms, one per (query-side
component, key-side component), that sum to the logit exactly (Elhage et al. 2021, "A Mathematical Framework
for Transformer Circuits": the QK circuit, here with the components' actual writes). A term is what that pair
adds with the norms held fixed. Families with an attention soft-cap (Gemma 2) are attributed before the cap.

The *competitor* is the key that would win without the top term: the largest logit of row i, over the other
keys the head may see, once the top pair's term at each key is taken away.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label
from analysis.methods.logit_attribution import check_supported
from analysis.runtime.cache import ActivationCache
from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.norms import FrozenNorm, freeze_norm
from analysis.runtime.weights import attention_module, head_norm, input_norm, query_key_projections, rotary_function

BIAS = "bias"


@dataclass(frozen=True, eq=False)
class HeadRead:
    """One head's query (or key) as an affine map of the stream at some positions, every norm frozen there.

    ``read`` maps writes [n, p, d] (parts of the stream) to their parts of the query/key [n, p, e]; the
    query/key of the whole stream is the sum over all its writes plus ``constant``.
    """

    weight: torch.Tensor  # [e, d]: the head's projection through the input norm's gain (and centring)
    stream_scale: torch.Tensor  # [p, 1]: the input norm's frozen 1/RMS (or 1/std) per position
    constant: torch.Tensor  # [p, e]: what no write contributes (projection and norm biases), rotated
    head_norm: FrozenNorm | None  # per-head q/k norm frozen per position, or None
    cos_sin: tuple[torch.Tensor, torch.Tensor] | None  # the model's rotary (cos, sin) at the positions
    rotary: object  # the modeling file's apply_rotary_pos_emb (unused without cos_sin)

    def rotate(self, parts: torch.Tensor) -> torch.Tensor:
        """Parts [n, p, e] rotated at their positions by the model's own rotary code (identity without RoPE)."""
        if self.cos_sin is None:
            return parts
        return self.rotary(parts[None], parts[None], *self.cos_sin)[0][0]

    def from_projected(self, projected: torch.Tensor) -> torch.Tensor:
        """Parts [n, p, e] already multiplied by ``weight`` -> their parts of the query/key."""
        parts = projected * self.stream_scale
        if self.head_norm is not None:
            parts = self.head_norm.linear(parts)
        return self.rotate(parts)

    def read(self, writes: torch.Tensor) -> torch.Tensor:
        """Writes [n, p, d] -> their parts of the query/key [n, p, e]."""
        return self.from_projected(writes.float() @ self.weight.t())


def _fold(weight: torch.Tensor, norm: FrozenNorm) -> torch.Tensor:
    """``weight`` [e, d] composed with a frozen norm's linear part, without its per-position scale."""
    folded = weight * norm.gain
    return folded - folded.mean(-1, keepdim=True) if norm.centred else folded


def _frozen_head_norm(module: torch.nn.Module | None, clean: torch.Tensor, index: int, width: int
                      ) -> FrozenNorm | None:
    """A q/k norm frozen at the clean pre-norm projection ``clean`` [p, heads, e]: per head (Qwen3, Gemma 3), or
    over all heads together with its gain sliced to the head (OLMo 2)."""
    if module is None:
        return None
    if module.weight.numel() == width:
        return freeze_norm(module, clean[:, index])
    frozen = freeze_norm(module, clean.reshape(clean.shape[0], -1))
    cut = slice(index * width, (index + 1) * width)
    return FrozenNorm(frozen.gain[cut], frozen.bias[cut], frozen.centred, frozen.scale)


def head_reads(handle: ModelHandle, layer: int, head: int, stream: torch.Tensor,
               cos_sin: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[HeadRead, HeadRead]:
    """(query read, key read) of query head ``head`` of ``layer``, frozen at the clean ``stream`` [p, d].

    ``cos_sin`` is the model's rotary (cos, sin) at the same positions ([1, p, rotary dims]); under grouped-query
    attention the key read is that of the head's KV head.
    """
    info = handle.info
    stream = stream.float()
    frozen = freeze_norm(input_norm(handle, layer), stream)
    normed = frozen.linear(stream) + frozen.bias  # the input norm's output, from its frozen (= true) scale
    wq, bq, wk, bk = query_key_projections(handle, layer)
    kv_head = head // (info.n_heads // wk.shape[0])
    rotary = rotary_function(handle, layer)
    cos_sin = None if cos_sin is None or rotary is None else tuple(part[:1].float() for part in cos_sin)
    reads = []
    for kind, weights, biases, index in (("q", wq, bq, head), ("k", wk, bk, kv_head)):
        clean = torch.einsum("pd,hed->phe", normed, weights) + biases  # every head's pre-norm projection
        norm = _frozen_head_norm(head_norm(handle, layer, kind), clean, index, info.head_dim)
        constant = (weights[index] @ frozen.bias + biases[index]).expand(stream.shape[0], -1)
        if norm is not None:
            constant = norm.linear(constant) + norm.bias
        read = HeadRead(_fold(weights[index], frozen), frozen.scale, constant, norm, cos_sin, rotary)
        reads.append(replace(read, constant=read.rotate(constant[None])[0]))
    return reads[0], reads[1]


def component_names(layer: int, n_heads: int) -> list[str]:
    """The writes that make up the stream entering ``layer``: input, each earlier head and MLP, bias."""
    names = ["input"]
    for earlier in range(layer):
        names += [head_label(earlier, h) for h in range(n_heads)] + [f"MLP{earlier}"]
    return names + [BIAS]


def _at(cache: ActivationCache, positions: torch.Tensor) -> ActivationCache:
    """The same run's cache with every site cut to ``positions`` (every site kept here has tokens on axis 1)."""
    store = {key: value[:, positions] for key, value in cache.store.items()}
    return ActivationCache(cache.logits, store, cache.parts, cache.n_heads, cache.head_dim)


def _component_parts(cache: ActivationCache, layer: int, read: HeadRead, positions: torch.Tensor,
                     only: int | None = None) -> torch.Tensor:
    """Each component's part of the head's query/key at ``positions`` [n_components, p, e], in
    ``component_names`` order (each earlier attention's write besides its heads — output bias, norm bias — joins
    the read's constant as ``bias``); with ``only`` (an index into those names) just that one [1, p, e]."""
    n_heads = cache.n_heads
    per_layer = n_heads + 1
    if only is not None and 0 < only <= layer * per_layer:  # one earlier head or MLP: only its layer is needed
        earlier, index = divmod(only - 1, per_layer)
        write = (cache["mlp_out", earlier] if index == n_heads else cache.head_writes(earlier)[:, :, index])
        return read.read(write[:, positions].float())
    cut = _at(cache, positions)
    pieces, bias = [read.read(cut["resid_pre", 0].float())], read.constant[None]
    for earlier in range(layer):
        heads = cut.head_writes(earlier)[0].transpose(0, 1)  # [H, p, d]
        pieces += [read.read(heads), read.read(cut["mlp_out", earlier].float())]
        bias = bias + read.read(cut["attn_out", earlier].float() - heads.sum(0, keepdim=True))
    parts = torch.cat(pieces)
    every = torch.cat([parts, bias])
    return every if only is None else every[only][None]


@dataclass(frozen=True, eq=False)
class QKAttribution:
    """One cell's logit split into query-side × key-side terms (``terms``), plus its row's context."""

    layer: int
    head: int
    query: int
    key: int
    components: tuple[str, ...]
    query_parts: np.ndarray  # [n, e]: each component's part of q_i
    key_parts: np.ndarray  # [n, e]: each component's part of k_j
    scaling: float
    logit: float  # the model's logit q_i·k_j·scaling (before any soft-cap)

    @property
    def matrix(self) -> np.ndarray:
        """[query component, key component] terms; they sum to ``logit``."""
        return self.scaling * self.query_parts @ self.key_parts.T

    def terms(self) -> pd.DataFrame:
        """One row per (query_component, key_component) with its ``term``, in component order."""
        n = len(self.components)
        names = np.asarray(self.components, dtype=object)
        return pd.DataFrame({"query_component": np.repeat(names, n), "key_component": np.tile(names, n),
                             "term": self.matrix.reshape(-1).astype(np.float64)})

    def sides(self) -> pd.DataFrame:
        """Per component: its query-side share (its query part · the whole key) and key-side share; each sums to
        the logit."""
        matrix = self.matrix
        return pd.DataFrame({"component": list(self.components), "query_side": matrix.sum(1).astype(np.float64),
                             "key_side": matrix.sum(0).astype(np.float64)})


@dataclass(frozen=True, eq=False)
class QKBreakdown:
    """A cell (i, j) of a head explained, with its softmax competitor (None: the head sees only one key)."""

    cell: QKAttribution
    competitor: QKAttribution | None
    logits: np.ndarray  # [keys ≤ i]: the head's logits of row i (before any soft-cap), NaN where masked


def _check_cell(handle: ModelHandle, input_ids: torch.Tensor, layer: int, head: int, query: int, key: int) -> None:
    check_supported(handle)
    info, n_tokens = handle.info, input_ids.shape[1]
    if not (0 <= layer < info.n_layers and 0 <= head < info.n_heads):
        raise ValueError(f"{head_label(layer, head)} is outside this model ({info.n_layers} layers × "
                         f"{info.n_heads} heads).")
    if not 0 <= query < n_tokens:
        raise ValueError(f"Query position {query} is outside the text ({n_tokens} tokens).")
    if not 0 <= key <= query:
        raise ValueError(f"Key position {key} must be between 0 and the query position {query} (causal attention).")


COMPONENT_SITES = ("resid_pre", "head_output", "attn_out", "mlp_out")


def component_run(handle: ModelHandle, input_ids: torch.Tensor, layer: int | None = None) -> ActivationCache:
    """The clean run QK attribution reads (the stream entering each layer, every head's output and MLP's write),
    up to ``layer`` (None: every layer); reusable for every cell of the text at that layer or below."""
    last = handle.info.n_layers - 1 if layer is None else layer
    return run_with_cache(handle, input_ids, sites=lambda site, at: site in COMPONENT_SITES and at <= last)


def qk_breakdown(handle: ModelHandle, input_ids: torch.Tensor, layer: int, head: int, query: int, key: int, *,
                 run: ActivationCache | None = None) -> QKBreakdown:
    """Split the logit of ``head`` of ``layer`` from ``query`` to ``key`` into component terms, and do the same
    for the key that would win without the top term. ``run`` is ``component_run`` of the text (or of any
    prefix reaching the query), computed if not given."""
    _check_cell(handle, input_ids, layer, head, query, key)
    cache = run or component_run(handle, input_ids[:, :query + 1], layer)  # causal: nothing after the query matters
    with torch.inference_mode():
        stream = cache["resid_pre", layer][:, :query + 1]
        inputs = handle.parts.layer_inputs(stream)[layer]
        stream = stream[0].float()
        cos_sin = inputs.get("position_embeddings")
        at = lambda positions: None if cos_sin is None else tuple(p[:, positions] for p in cos_sin)  # noqa: E731
        scaling = float(getattr(attention_module(handle, layer), "scaling", None) or handle.info.head_dim ** -0.5)
        every = torch.arange(query + 1)
        q_read, _ = head_reads(handle, layer, head, stream[[query]], at([query]))
        _, k_read = head_reads(handle, layer, head, stream, at(every))
        q_total = q_read.read(stream[[query]][None])[0, 0] + q_read.constant[0]
        k_total = k_read.read(stream[None])[0] + k_read.constant
        logits = scaling * (k_total @ q_total)
        mask = inputs.get("attention_mask")
        if mask is not None:
            logits = torch.where(mask[0, 0, query, :query + 1] > torch.finfo(mask.dtype).min / 2, logits, torch.nan)
        q_parts = _component_parts(cache, layer, q_read, torch.tensor([query]))[:, 0]
        names = tuple(component_names(layer, handle.info.n_heads))

        def attribution(position: int) -> QKAttribution:
            _, read = head_reads(handle, layer, head, stream[[position]], at([position]))
            k_parts = _component_parts(cache, layer, read, torch.tensor([position]))[:, 0]
            return QKAttribution(layer, head, query, position, names, q_parts.numpy(), k_parts.numpy(), scaling,
                                 float(logits[position]) if not torch.isnan(logits[position])
                                 else float(scaling * q_total @ k_total[position]))

        cell = attribution(key)
        top_query, top_key = np.unravel_index(np.argmax(cell.matrix), cell.matrix.shape)
        top_key_parts = _component_parts(cache, layer, k_read, every, only=int(top_key))[0]  # [keys, e]
        without_top = logits - scaling * (top_key_parts @ torch.from_numpy(cell.query_parts[top_query]))
        without_top[key] = torch.nan
        rival = None if torch.isnan(without_top).all() else int(torch.nan_to_num(without_top, nan=-torch.inf).argmax())
        return QKBreakdown(cell, None if rival is None else attribution(rival), logits.numpy())


def qk_attribution(handle: ModelHandle, input_ids: torch.Tensor, layer: int, head: int, query: int, key: int
                   ) -> pd.DataFrame:
    """The logit of ``head`` of ``layer`` from ``query`` to ``key`` as one row per (query_component,
    key_component) with its ``term``; the terms sum to the logit."""
    return qk_breakdown(handle, input_ids, layer, head, query, key).cell.terms()
