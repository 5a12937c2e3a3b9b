"""The modules a head's query and key come from, located by role: input norm, projections, q/k norms, rotary.

The attention function receives ``q = R_p(N_q(W_q · N(x_p) + b_q))`` for the stream ``x_p`` at position p, with
N the layer's input norm, W_q/b_q the head's slice of the query projection, N_q an optional per-head query norm
(Qwen3, Gemma 3, OLMo 2) and R_p the modeling file's own rotary embedding (the key likewise, per KV head). The
projections are separate (``q_proj``/``k_proj``) or fused (``c_attn``, ``qkv_proj``, ``query_key_value``) and
are split here by the modeling file's own layout; nothing of the forward is re-implemented.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch
from transformers.pytorch_utils import Conv1D

from analysis.runtime.handle import ModelHandle

_INPUT_NORM_NAMES = ("input_layernorm", "ln_1")


class QueryKeyUnsupported(ValueError):
    """The head's query and key projections could not be located in this architecture."""


def attention_module(handle: ModelHandle, layer: int) -> torch.nn.Module:
    """The attention module of ``layer`` (the one the registered attention function is called for)."""
    parts = handle.parts
    for module in parts.layers[layer].modules():
        if parts.layer_of.get(id(module)) == layer:
            return module
    raise QueryKeyUnsupported(f"{handle.info.name}: no attention module found in layer {layer}.")


def input_norm(handle: ModelHandle, layer: int) -> torch.nn.Module | None:
    """The norm the layer applies to the stream before its attention (None: the layer reads the raw stream)."""
    block = handle.parts.layers[layer]
    return next((getattr(block, name) for name in _INPUT_NORM_NAMES if hasattr(block, name)), None)


def _weight_and_bias(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[out, in] weight and bias of a Linear or a GPT-2 Conv1D."""
    weight = module.weight.t() if isinstance(module, Conv1D) else module.weight
    return weight, getattr(module, "bias", None)


def projections(handle: ModelHandle, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query and key projections of a layer per head: W_q [H, e, d], b_q [H, e], W_k [K, e, d], b_k [K, e]."""
    info = handle.info
    attention = attention_module(handle, layer)
    heads, kv_heads, width = info.n_heads, info.n_kv_heads, info.head_dim
    if hasattr(attention, "q_proj") and hasattr(attention, "k_proj"):
        (wq, bq), (wk, bk) = _weight_and_bias(attention.q_proj), _weight_and_bias(attention.k_proj)
    elif hasattr(attention, "qkv_proj"):  # Phi-3: [q (H·e) | k (K·e) | v (K·e)]
        weight, bias = _weight_and_bias(attention.qkv_proj)
        cut = (heads * width, heads * width + kv_heads * width)
        wq, wk = weight[:cut[0]], weight[cut[0]:cut[1]]
        bq, bk = (None, None) if bias is None else (bias[:cut[0]], bias[cut[0]:cut[1]])
    elif hasattr(attention, "c_attn"):  # GPT-2: [q (d) | k (d) | v (d)]
        weight, bias = _weight_and_bias(attention.c_attn)
        d = heads * width
        wq, wk = weight[:d], weight[d:2 * d]
        bq, bk = (None, None) if bias is None else (bias[:d], bias[d:2 * d])
    elif hasattr(attention, "query_key_value"):  # GPT-NeoX: per head [q (e) | k (e) | v (e)]
        weight, bias = _weight_and_bias(attention.query_key_value)
        per_head = weight.view(heads, 3 * width, -1)
        wq, wk = per_head[:, :width].reshape(heads * width, -1), per_head[:, width:2 * width].reshape(heads * width, -1)
        if bias is not None:
            bias = bias.view(heads, 3 * width)
            bq, bk = bias[:, :width].reshape(-1), bias[:, width:2 * width].reshape(-1)
        else:
            bq = bk = None
    else:
        raise QueryKeyUnsupported(f"{handle.info.name}: the query and key projections of layer {layer} were not found.")
    wq, wk = wq.float().reshape(heads, width, -1), wk.float().reshape(-1, width, wk.shape[-1])
    zeros = lambda w: torch.zeros(w.shape[:2])  # noqa: E731
    bq = zeros(wq) if bq is None else bq.float().reshape(heads, width)
    bk = zeros(wk) if bk is None else bk.float().reshape(-1, width)
    return wq, bq, wk, bk


def head_norm(handle: ModelHandle, layer: int, kind: str) -> torch.nn.Module | None:
    """The per-head query (``kind`` "q") or key ("k") norm of a layer (Qwen3, Gemma 3, OLMo 2), else None."""
    return getattr(attention_module(handle, layer), f"{kind}_norm", None)


def rotary_function(handle: ModelHandle, layer: int) -> Callable | None:
    """The modeling file's own ``apply_rotary_pos_emb`` for this layer's attention (None: no rotary code)."""
    attention = attention_module(handle, layer)
    return sys.modules[type(attention).__module__].__dict__.get("apply_rotary_pos_emb")
