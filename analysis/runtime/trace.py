"""Run a text through a model once and keep what every view needs, in memory that grows linearly with the text.

A trace keeps the token ids, the next-token predictions, the per-token loss, the residual stream entering
every layer ([layers, tokens, d_model]) and a pooled thumbnail of every head's pattern. Full attention
patterns are quadratic in the length (30 layers × 9 heads × 4,096² floats is 18 GB for SmolLM2), so they are
never stored: ``pattern(layer, head)`` and ``layer_patterns(layer)`` recompute one layer's attention from
the kept residual stream (one layer's attention, not a forward), exactly as the full run computed it. On long
texts the thumbnails come without the patterns too: each layer's attention also reads a matrix of key-block
averages as its values (``pooling.key_bin_readout``), so the whole run uses the fused attention kernel; on
shorter ones, where the MLPs dominate, pooling each layer's eager pattern costs less than that second call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from analysis.runtime.pooling import key_bin_readout, thumbnails as pool_thumbnails, thumbnails_from_readout
from analysis.runtime.forward import layer_attention, run_patterns, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.tokens import display_token, token_strings

DEFAULT_MAX_TOKENS = 256
HARD_MAX_TOKENS = 4096
VIEW_ONLY_MAX_TOKENS = 1024  # models whose patterns come only from a full forward keeping every layer
THUMBNAIL_CELLS = 64  # pooled cells per side of each head's kept thumbnail
LOSS_CHUNK = 512  # positions unembedded at once for the per-token loss
READOUT_TOKENS = 1024  # from this length the thumbnails are read through the fused kernel (faster: BENCHMARKS.md)


class TextError(ValueError):
    """The text cannot be analysed (e.g. it is empty)."""


@dataclass(frozen=True)
class Prediction:
    """One candidate next token with its probability."""

    token: str
    token_id: int
    probability: float


@dataclass(frozen=True, eq=False)
class Trace:
    """A text's run through a model. Arrays are read-only: traces are shared between sessions."""

    model_name: str
    text: str
    token_ids: np.ndarray  # [tokens]
    tokens: list[str]  # raw decoded strings, e.g. ' Mary'
    causal: bool
    n_tokens_in_text: int  # before truncation
    top_next: list[Prediction]  # next-token top-k at the last position (causal models)
    token_loss: np.ndarray | None  # [tokens - 1]: loss of predicting token i+1 at position i
    thumbnails: np.ndarray  # [layers, heads, cells, cells] block means of every head's pattern
    thumbnails_without_sink: np.ndarray  # the same with key 0 left out of the means
    residuals: torch.Tensor | None = field(repr=False)  # [layers, tokens, d_model] stream entering each layer
    handle: ModelHandle = field(repr=False)

    @property
    def n_tokens(self) -> int:
        """Tokens analysed (after truncation)."""
        return len(self.tokens)

    @property
    def n_layers(self) -> int:
        """Layers of the model."""
        return self.thumbnails.shape[0]

    @property
    def n_heads(self) -> int:
        """Query heads per layer."""
        return self.thumbnails.shape[1]

    @property
    def truncated(self) -> bool:
        """True if the text had more tokens than the cap."""
        return self.n_tokens_in_text > self.n_tokens

    @property
    def display_tokens(self) -> list[str]:
        """Tokens with visible whitespace and escaped HTML, for axis labels and tables."""
        return [display_token(t) for t in self.tokens]

    @property
    def nbytes(self) -> int:
        """Memory the trace holds (arrays and residual stream), for the cache budget."""
        kept = self.token_ids.nbytes + 2 * self.thumbnails.nbytes + sum(len(t) for t in self.tokens)
        kept += 0 if self.token_loss is None else self.token_loss.nbytes
        return kept + (0 if self.residuals is None else self.residuals.numel() * self.residuals.element_size())

    def layer_patterns(self, layer: int) -> np.ndarray:
        """Attention weights of every head of ``layer``: [heads, query, key] float32, computed on demand."""
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} is out of range (0–{self.n_layers - 1})")
        residual = None if self.residuals is None else self.residuals[layer][None]
        ids = torch.from_numpy(np.array(self.token_ids))[None]
        weights = layer_attention(self.handle, ids, layer, residual)
        return _readonly(weights[0].float().cpu().numpy())

    def pattern(self, layer: int, head: int) -> np.ndarray:
        """One head's attention weights [query, key] float32, computed on demand."""
        if not 0 <= head < self.n_heads:
            raise IndexError(f"head {head} is out of range (0–{self.n_heads - 1})")
        return _readonly(np.ascontiguousarray(self.layer_patterns(layer)[head]))

    def map_layers(self, reduce: Callable[[int, np.ndarray], np.ndarray],
                   layers: range | None = None) -> list[np.ndarray]:
        """``reduce(layer, layer_patterns)`` for each layer, one layer's patterns in memory at a time."""
        return [reduce(layer, self.layer_patterns(layer)) for layer in (layers or range(self.n_layers))]

    def token_attention(self, position: int, direction: str) -> np.ndarray:
        """Where the token at ``position`` looks ('from': its query row) or who looks at it ('to': its key
        column), for every head: [layers, heads, tokens]."""
        if direction not in ("from", "to"):
            raise ValueError(f"direction must be 'from' or 'to', got {direction!r}")
        pick = (lambda _, p: p[:, position, :]) if direction == "from" else (lambda _, p: p[:, :, position])
        return _readonly(np.stack([np.array(row) for row in self.map_layers(pick)]))


def encode_text(handle: ModelHandle, text: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> tuple[torch.Tensor, int]:
    """Token ids [1, n] (truncated to ``max_tokens``) and the untruncated count; raises TextError."""
    if not text or not text.strip():
        raise TextError("The text is empty: type or paste some text, or pick an example.")
    max_tokens = max(2, min(int(max_tokens), token_cap(handle)))
    ids = handle.tokenizer(text, return_tensors="pt", truncation=False).input_ids
    total = ids.shape[1]
    if not handle.info.causal and total > max_tokens:  # keep the closing [SEP] of an encoder's input
        ids = torch.cat([ids[:, : max_tokens - 1], ids[:, -1:]], dim=1)
    return ids[:, :max_tokens], total


def token_cap(handle: ModelHandle) -> int:
    """The longest text a trace of this model may hold: the hard cap, the model's context, and view-only
    models (whose patterns need a full forward keeping every layer) at most ``VIEW_ONLY_MAX_TOKENS``."""
    context = getattr(handle.parts.config, "max_position_embeddings", None) or HARD_MAX_TOKENS
    cap = min(HARD_MAX_TOKENS, int(context))
    return cap if handle.parts.supports_interventions else min(cap, VIEW_ONLY_MAX_TOKENS)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _token_loss(handle: ModelHandle, final_stream: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
    """Loss of predicting token i+1 at position i, unembedding ``LOSS_CHUNK`` positions at a time."""
    losses = []
    targets = ids[0, 1:].to(final_stream.device)
    with torch.inference_mode():
        for start in range(0, targets.shape[0], LOSS_CHUNK):
            log_probs = torch.log_softmax(handle.parts.readout(final_stream[:, start:start + LOSS_CHUNK])[0].float(), -1)
            chunk = targets[start:start + LOSS_CHUNK]
            losses.append(-log_probs[: chunk.shape[0]].gather(1, chunk[:, None])[:, 0])
    return torch.cat(losses).cpu().numpy()


def _top_next(handle: ModelHandle, last_logits: torch.Tensor, top_k: int) -> list[Prediction]:
    probs, top_ids = torch.softmax(last_logits.float(), dim=-1).topk(top_k)
    return [Prediction(s, int(i), float(p))
            for s, i, p in zip(token_strings(handle.tokenizer, top_ids), top_ids, probs)]


def run_trace(handle: ModelHandle, text: str, max_tokens: int = DEFAULT_MAX_TOKENS, top_k: int = 10) -> Trace:
    """Tokenize (truncating above ``max_tokens``) and run the model once, keeping what grows linearly."""
    ids, total = encode_text(handle, text, max_tokens)
    parts, n_tokens = handle.parts, ids.shape[1]
    cells = min(n_tokens, THUMBNAIL_CELLS)
    thumbnails = np.zeros((parts.n_layers, handle.info.n_heads, cells, cells), dtype=np.float32)
    without_sink = np.zeros_like(thumbnails)

    def keep_thumbnail(layer: int, weights: torch.Tensor) -> None:
        thumbnails[layer], without_sink[layer] = pool_thumbnails(weights[0], cells)

    def keep_readout(layer: int, read: torch.Tensor) -> None:
        thumbnails[layer], without_sink[layer] = thumbnails_from_readout(read[0].transpose(0, 1), cells)

    residuals, top_next, token_loss = None, [], None
    if parts.supports_interventions:
        last = parts.n_layers - 1
        thumbnails_by = (dict(key_readout=key_bin_readout(n_tokens, cells), on_key_readout=keep_readout)
                         if n_tokens >= READOUT_TOKENS else dict(on_pattern=keep_thumbnail))
        result = run_with_cache(handle, ids, sites=lambda site, layer: site == "resid_pre" or (
            site, layer) == ("resid_post", last), last_logits=1 if parts.causal else None, **thumbnails_by)
        if parts.supports_restart:
            residuals = result.stack("resid_pre")[:, 0].float().cpu()
        if parts.causal:
            top_next = _top_next(handle, result.logits[0, -1], top_k)
            token_loss = _token_loss(handle, result.final_stream, ids)
    else:
        result = run_patterns(handle, ids)
        for layer in result.layers("pattern"):
            keep_thumbnail(layer, result["pattern", layer])
        if parts.causal:
            top_next = _top_next(handle, result.logits[0, -1], top_k)
            token_loss = _loss_from_logits(result.logits, ids)
    token_ids = ids[0].cpu().numpy()
    return Trace(
        model_name=handle.info.name,
        text=text,
        token_ids=_readonly(token_ids),
        tokens=token_strings(handle.tokenizer, token_ids),
        causal=handle.info.causal,
        n_tokens_in_text=total,
        top_next=top_next,
        token_loss=None if token_loss is None else _readonly(token_loss),
        thumbnails=_readonly(thumbnails),
        thumbnails_without_sink=_readonly(without_sink),
        residuals=residuals,
        handle=handle,
    )


def _loss_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> np.ndarray:
    log_probs = torch.log_softmax(logits[0].float(), dim=-1)
    targets = ids[0, 1:].to(log_probs.device)
    return -log_probs[:-1].gather(1, targets[:, None])[:, 0].cpu().numpy()
