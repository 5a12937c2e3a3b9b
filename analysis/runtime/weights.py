"""Each head's weights read from a loaded model's own modules: W_Q, W_K, W_V, W_O (and biases), the norm gains.

Weight-based circuit analysis (Elhage et al. 2021, *A Mathematical Framework for Transformer Circuits*) needs,
per query head h of layer l, the maps W_Q,h, W_K,h, W_V,h: residual stream (d_model) → head_dim and
W_O,h: head_dim → residual stream. This is the one adapter that reads them, for every family the Atlas runs:

- separate projections ``q_proj``/``k_proj``/``v_proj`` (LLaMA, Mistral, Qwen2/3, OLMo, Gemma 2/3) or
  ``query``/``key``/``value`` (BERT, RoBERTa);
- Phi-3's fused ``qkv_proj`` (all query heads, then the KV heads' keys, then their values);
- GPT-2's fused ``c_attn`` (a ``Conv1D``: queries, keys, values, each d_model wide);
- GPT-NeoX's fused ``query_key_value`` (per head, its query, key and value side by side).

The layer list, each layer's attention module and output projection come from ``ModelParts`` (found and
checked at load). Under grouped-query attention a query head uses its KV group's W_K and W_V: ``W_K`` and
``W_V`` here are already indexed per query head.

Norms are folded as the circuits literature does: each norm's gain (and LayerNorm's bias, into the bias terms)
goes into the matrix that reads from it — the layer's input norm into W_Q, W_K, W_V; the final norm into the
unembedding; a norm on the attention's output (Gemma 2/3, OLMo 2) into W_O; a per-head query/key norm (Qwen3,
Gemma 3, OLMo 2) into W_Q/W_K — and each norm's 1/RMS scale is left out. A gain is read by running the norm
module itself on probe vectors (``analysis.runtime.norms.freeze_norm``), so no norm code is copied. Rotary position embeddings are left out (W_QK is the
map at relative position 0). Families whose attention does not go through transformers' attention interface,
or whose projections are named otherwise, have no ``HeadWeights`` (``WeightsUnavailable`` says why).

QK attribution reads the same modules unfolded, at the model's own positions: ``attention_module``,
``input_norm``, ``head_norm``, ``query_key_projections`` (per head, no gain folded) and ``rotary_function``
(the modeling file's own ``apply_rotary_pos_emb``), so the projection layouts above are read in this one place.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

import torch
from transformers.pytorch_utils import Conv1D

from analysis.runtime.handle import ModelHandle
from analysis.runtime.norms import freeze_norm

_INPUT_NORM_NAMES = ("input_layernorm", "ln_1", "attention_norm", "ln_attn")
_Q_NORM_NAMES = ("q_norm", "query_layernorm")
_K_NORM_NAMES = ("k_norm", "key_layernorm")


class WeightsUnavailable(ValueError):
    """The model's per-head weights cannot be read (the message says what is missing)."""


@dataclass(frozen=True, eq=False)
class HeadWeights:
    """Every head's weights with the norm gains folded in, as float32 tensors on the CPU."""

    W_Q: torch.Tensor  # [layers, heads, head_dim, d_model]
    W_K: torch.Tensor  # [layers, heads, head_dim, d_model], the query head's KV group
    W_V: torch.Tensor  # [layers, heads, head_dim, d_model], the query head's KV group
    W_O: torch.Tensor  # [layers, heads, d_model, head_dim]
    b_Q: torch.Tensor  # [layers, heads, head_dim]
    b_K: torch.Tensor  # [layers, heads, head_dim]
    b_V: torch.Tensor  # [layers, heads, head_dim]
    b_O: torch.Tensor  # [layers, d_model]
    kv_group: tuple[int, ...]  # per query head: its KV head
    final_gain: torch.Tensor | None  # [d_model]; None for encoders (no unembedding)
    notes: tuple[str, ...]

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return self.W_Q.shape[0]

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return self.W_Q.shape[1]


def norm_gain_and_bias(norm: torch.nn.Module | None, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gain and bias [width] a norm applies after normalising, read off the module itself (``freeze_norm``);
    ``None`` (no norm) is gain 1, bias 0."""
    frozen = freeze_norm(norm, torch.zeros(1, width))
    return frozen.gain.cpu(), frozen.bias.cpu()


def child_module(module: torch.nn.Module, names: tuple[str, ...]) -> torch.nn.Module | None:
    """The first attribute of ``module`` with one of these names that is a module, or None."""
    return next((getattr(module, name) for name in names if isinstance(getattr(module, name, None),
                                                                        torch.nn.Module)), None)


def _linear(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight [out, in] and bias of a Linear or a GPT-2 Conv1D, as float32."""
    weight = module.weight.t() if isinstance(module, Conv1D) else module.weight
    bias = getattr(module, "bias", None)
    return weight.detach().float().cpu(), None if bias is None else bias.detach().float().cpu()


def _projections(attention: torch.nn.Module, n_heads: int, n_kv: int, head_dim: int
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(weight [rows, d_model], bias [rows]) of the query, key and value projections, rows grouped per head."""
    def with_bias(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return weight, torch.zeros(weight.shape[0]) if bias is None else bias

    for names in (("q_proj", "k_proj", "v_proj"), ("query", "key", "value")):
        if all(isinstance(getattr(attention, name, None), torch.nn.Module) for name in names):
            return tuple(with_bias(*_linear(getattr(attention, name))) for name in names)
    if isinstance(getattr(attention, "qkv_proj", None), torch.nn.Module):  # Phi-3: [q heads | k heads | v heads]
        weight, bias = with_bias(*_linear(attention.qkv_proj))
        sizes = [n_heads * head_dim, n_kv * head_dim, n_kv * head_dim]
        return tuple(zip(weight.split(sizes), bias.split(sizes)))
    if isinstance(getattr(attention, "c_attn", None), torch.nn.Module):  # GPT-2: [q | k | v]
        weight, bias = with_bias(*_linear(attention.c_attn))
        sizes = [n_heads * head_dim, n_kv * head_dim, n_kv * head_dim]
        return tuple(zip(weight.split(sizes), bias.split(sizes)))
    if isinstance(getattr(attention, "query_key_value", None), torch.nn.Module):  # NeoX: per head [q, k, v]
        weight, bias = with_bias(*_linear(attention.query_key_value))
        weight = weight.view(n_heads, 3, head_dim, -1)
        bias = bias.view(n_heads, 3, head_dim)
        return tuple((weight[:, part].reshape(n_heads * head_dim, -1), bias[:, part].reshape(-1)) for part in range(3))
    raise WeightsUnavailable(f"{type(attention).__name__} has no query/key/value projection the Atlas can read "
                             "(known: q_proj/k_proj/v_proj, query/key/value, qkv_proj, c_attn, query_key_value).")


def attention_module(handle: ModelHandle, layer: int) -> torch.nn.Module:
    """The attention module of ``layer`` (the one the registered attention function is called for)."""
    parts = handle.parts
    module = next((module for module in parts.layers[layer].modules() if parts.layer_of.get(id(module)) == layer),
                  None)
    if module is None:
        raise WeightsUnavailable(f"{handle.info.name}: no attention module found in layer {layer}.")
    return module


def input_norm(handle: ModelHandle, layer: int) -> torch.nn.Module | None:
    """The norm the layer applies to the stream before its attention (None: the layer reads the raw stream)."""
    return child_module(handle.parts.layers[layer], _INPUT_NORM_NAMES)


def head_norm(handle: ModelHandle, layer: int, kind: str) -> torch.nn.Module | None:
    """The per-head query (``kind`` "q") or key ("k") norm of a layer (Qwen3, Gemma 3, OLMo 2), else None."""
    return child_module(attention_module(handle, layer), _Q_NORM_NAMES if kind == "q" else _K_NORM_NAMES)


def query_key_projections(handle: ModelHandle, layer: int
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's query and key projections per head, no norm gain folded: W_q [H, e, d], b_q [H, e] and, per KV
    head, W_k [K, e, d], b_k [K, e] (float32, zero biases where the model has none)."""
    info = handle.info
    width = info.head_dim
    (wq, bq), (wk, bk), _ = _projections(attention_module(handle, layer), info.n_heads, info.n_kv_heads, width)
    return (wq.view(-1, width, wq.shape[-1]), bq.view(-1, width), wk.view(-1, width, wk.shape[-1]),
            bk.view(-1, width))


def rotary_function(handle: ModelHandle, layer: int) -> Callable | None:
    """The modeling file's own ``apply_rotary_pos_emb`` for this layer's attention (None: no rotary code)."""
    attention = attention_module(handle, layer)
    return sys.modules[type(attention).__module__].__dict__.get("apply_rotary_pos_emb")


def read_head_weights(handle: ModelHandle) -> HeadWeights:
    """Every head's folded weights from the model's own modules; raises ``WeightsUnavailable``."""
    parts, info = handle.parts, handle.info
    if not parts.supports_interventions or parts.output_projections is None:
        raise WeightsUnavailable("This model's attention does not go through transformers' attention interface, "
                                 "so its heads' weights are not located: weight-based scores are unavailable.")
    H, KV, hd, d = info.n_heads, info.n_kv_heads, info.head_dim, info.d_model
    group = tuple(h // (H // KV) for h in range(H))
    notes = ["Rotary position embeddings are left out: W_QK is the query–key map at relative position 0."
             ] if parts.rotary is not None else []
    per_layer = []
    for index in range(len(parts.layers)):
        attention = attention_module(handle, index)
        (wq, bq), (wk, bk), (wv, bv) = _projections(attention, H, KV, hd)
        gain, shift = norm_gain_and_bias(input_norm(handle, index), d)
        wq, wk, wv = (w.view(-1, hd, d) * gain for w in (wq, wk, wv))
        bq, bk, bv = (b.view(-1, hd) + w @ shift for b, w in ((bq, wq), (bk, wk), (bv, wv)))
        for name, norms, (w, b) in (("query", _Q_NORM_NAMES, (wq, bq)), ("key", _K_NORM_NAMES, (wk, bk))):
            head_norm = child_module(attention, norms)
            if head_norm is not None:
                head_gain, _ = norm_gain_and_bias(head_norm, hd)
                w.mul_(head_gain[:, None])
                b.mul_(head_gain)
                note = ("Per-head query/key norms: their gains are folded into W_Q and W_K, their 1/RMS scale "
                        "(one number per token and head) is left out.")
                if note not in notes:
                    notes.append(note)
        wo, bo = _linear(parts.output_projections[index])
        wo = wo.view(d, H, hd).permute(1, 0, 2)
        bo = torch.zeros(d) if bo is None else bo
        output_norm = parts.attention_output_norms[index]
        if output_norm is not None:
            out_gain, _ = norm_gain_and_bias(output_norm, d)
            wo, bo = wo * out_gain[:, None], bo * out_gain
            note = "The norm on each attention layer's output: its gain is folded into W_O, its 1/RMS scale left out."
            if note not in notes:
                notes.append(note)
        index_kv = torch.tensor(group) if wk.shape[0] == KV else torch.arange(H)
        per_layer.append((wq, wk[index_kv], wv[index_kv], wo, bq, bk[index_kv], bv[index_kv], bo))
    stacked = [torch.stack(values) for values in zip(*per_layer)]
    final_gain = None
    if parts.causal and parts.unembedding is not None:
        final_gain, _ = norm_gain_and_bias(parts.final_norm, d)
    else:
        notes.append("No unembedding (an encoder): the OV and QK circuits through the vocabulary and the copying "
                     "and successor scores are unavailable; composition scores work.")
    return HeadWeights(*stacked, kv_group=group, final_gain=final_gain, notes=tuple(notes))


def embedding_rows(handle: ModelHandle, token_ids: torch.Tensor) -> torch.Tensor:
    """W_E rows [n, d_model] of these tokens, through the model's own input embedding (Gemma's scale included)."""
    with torch.inference_mode():
        return handle.model.get_input_embeddings()(token_ids.to(handle.device)).float().cpu()


def unembedding_rows(handle: ModelHandle, weights: HeadWeights, token_ids: torch.Tensor | slice) -> torch.Tensor:
    """W_U rows [n, d_model] of these tokens with the final norm's gain folded in."""
    weight = handle.parts.unembedding.weight
    return weight[token_ids].detach().float().cpu() * weights.final_gain
