"""Architecture adapters: the one place that knows module names and quirks of each model family.

Every adapter splits a layer at the named site ``head_output`` (called ``z`` in code): the per-head
attention result ``pattern @ V`` of shape [batch, heads, query, head_dim], just before the output
projection. The forward pass in ``analysis.forward`` edits heads there. For GQA models each query
head has its own ``z``; K/V are shared inside a group.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LayerContext:
    """What every layer of one forward needs: rotary tables and the additive attention mask."""

    mask: torch.Tensor
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _additive_causal_mask(length: int, dtype: torch.dtype, device) -> torch.Tensor:
    blocked = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(length, length, dtype=dtype, device=device).masked_fill(blocked, torch.finfo(dtype).min)


class DecoderAdapter:
    """LLaMA-style pre-norm decoders (LLaMA, SmolLM, Mistral, Qwen2): RMSNorm, RoPE, GQA, gated MLP."""

    family = "llama"
    supports_interventions = True
    causal = True
    pre_norm = True

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.body = model.model
        self.layers = self.body.layers
        config = model.config
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = getattr(config, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings: the residual stream entering layer 0."""
        return self.body.embed_tokens(input_ids)

    def context(self, residual: torch.Tensor) -> LayerContext:
        """Rotary tables and causal mask for a sequence of this length."""
        length = residual.shape[1]
        positions = torch.arange(length, device=residual.device)[None]
        return LayerContext(
            mask=_additive_causal_mask(length, residual.dtype, residual.device),
            rotary=self.body.rotary_emb(residual, positions),
        )

    def attend(self, index: int, residual: torch.Tensor, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (head_output z [B,H,T,dh], pattern [B,H,T,T]) of layer ``index``."""
        attention = self.layers[index].self_attn
        hidden = self.layers[index].input_layernorm(residual)
        batch, length, _ = hidden.shape
        q = attention.q_proj(hidden).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = attention.k_proj(hidden).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = attention.v_proj(hidden).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in ctx.rotary)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * attention.scaling + ctx.mask
        pattern = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(pattern, v), pattern

    def head_write_weight(self, index: int) -> torch.Tensor:
        """The output projection of layer ``index`` as [d_model, heads * head_dim]."""
        return self.layers[index].self_attn.o_proj.weight

    def attention_output(self, index: int, z: torch.Tensor) -> torch.Tensor:
        """What the heads of layer ``index`` add to the residual stream."""
        batch, _, length, _ = z.shape
        return self.layers[index].self_attn.o_proj(z.transpose(1, 2).reshape(batch, length, -1))

    def finish(self, index: int, residual: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Add the attention output and the MLP to the residual stream."""
        layer = self.layers[index]
        residual = residual + self.attention_output(index, z)
        return residual + layer.mlp(layer.post_attention_layernorm(residual))

    def mlp_output(self, index: int, residual_mid: torch.Tensor) -> torch.Tensor:
        """The MLP's write for the residual after attention."""
        layer = self.layers[index]
        return layer.mlp(layer.post_attention_layernorm(residual_mid))

    def final_norm(self, residual: torch.Tensor) -> torch.Tensor:
        """The final RMSNorm."""
        return self.body.norm(residual)

    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """Next-token logits from the last residual stream."""
        return self.model.lm_head(self.final_norm(residual))

    def unembedding(self) -> torch.Tensor:
        """The unembedding matrix [vocab, d_model]."""
        return self.model.lm_head.weight


class EncoderAdapter:
    """BERT-style post-norm encoders: bidirectional attention, LayerNorm after each residual add."""

    family = "bert"
    supports_interventions = True
    causal = False
    pre_norm = False

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.layers = model.encoder.layer
        self.n_heads = model.config.num_attention_heads
        self.n_kv_heads = self.n_heads
        self.head_dim = model.config.hidden_size // self.n_heads

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + type embeddings after LayerNorm."""
        return self.model.embeddings(input_ids=input_ids)

    def context(self, residual: torch.Tensor) -> LayerContext:
        """No mask: one unpadded text attends everywhere."""
        length = residual.shape[1]
        return LayerContext(mask=torch.zeros(length, length, dtype=residual.dtype, device=residual.device))

    def attend(self, index: int, residual: torch.Tensor, ctx: LayerContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (head_output z [B,H,T,dh], pattern [B,H,T,T]) of layer ``index``."""
        attention = self.layers[index].attention.self
        batch, length, _ = residual.shape
        shape = (batch, length, self.n_heads, self.head_dim)
        q = attention.query(residual).view(shape).transpose(1, 2)
        k = attention.key(residual).view(shape).transpose(1, 2)
        v = attention.value(residual).view(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) * attention.scaling + ctx.mask
        pattern = F.softmax(scores, dim=-1)
        return torch.matmul(pattern, v), pattern

    def head_write_weight(self, index: int) -> torch.Tensor:
        """The attention output projection of layer ``index`` as [d_model, heads * head_dim]."""
        return self.layers[index].attention.output.dense.weight

    def attention_output(self, index: int, z: torch.Tensor) -> torch.Tensor:
        """The heads' projected output (before the residual add and LayerNorm)."""
        batch, _, length, _ = z.shape
        return self.layers[index].attention.output.dense(z.transpose(1, 2).reshape(batch, length, -1))

    def finish(self, index: int, residual: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Residual add + LayerNorm, then the feed-forward block with its own add + LayerNorm."""
        layer = self.layers[index]
        mid = layer.attention.output.LayerNorm(self.attention_output(index, z) + residual)
        return layer.output(layer.intermediate(mid), mid)

    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """Encoders have no head: the last hidden states are the output."""
        return residual


class ViewOnlyAdapter:
    """Any other architecture: attention patterns from the library's own forward, no head edits."""

    family = "other"
    supports_interventions = False
    pre_norm = False

    def __init__(self, model: torch.nn.Module):
        self.model = model


def adapter_for(model: torch.nn.Module):
    """Pick the adapter for a loaded model."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in {"llama", "mistral", "qwen2"} and hasattr(model, "lm_head"):
        return DecoderAdapter(model)
    if model_type == "bert" and hasattr(model, "encoder"):
        return EncoderAdapter(model)
    return ViewOnlyAdapter(model)
