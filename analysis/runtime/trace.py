"""Run a text through a model once and keep what every view needs: tokens, attentions, predictions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from analysis.runtime.forward import run_patterns
from analysis.runtime.handle import ModelHandle
from analysis.runtime.tokens import display_token, token_strings

DEFAULT_MAX_TOKENS = 256
HARD_MAX_TOKENS = 1024


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
    attentions: np.ndarray  # [layers, heads, query, key] float32
    causal: bool
    n_tokens_in_text: int  # before truncation
    top_next: list[Prediction]  # next-token top-k at the last position (causal models)
    token_loss: np.ndarray | None  # [tokens - 1]: loss of predicting token i+1 at position i

    @property
    def n_tokens(self) -> int:
        """Tokens analysed (after truncation)."""
        return len(self.tokens)

    @property
    def truncated(self) -> bool:
        """True if the text had more tokens than the cap."""
        return self.n_tokens_in_text > self.n_tokens

    @property
    def display_tokens(self) -> list[str]:
        """Tokens with visible whitespace and escaped HTML, for axis labels and tables."""
        return [display_token(t) for t in self.tokens]


def encode_text(handle: ModelHandle, text: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> tuple[torch.Tensor, int]:
    """Token ids [1, n] (truncated to ``max_tokens``) and the untruncated count; raises TextError."""
    if not text or not text.strip():
        raise TextError("The text is empty: type or paste some text, or pick an example.")
    max_tokens = max(2, min(int(max_tokens), HARD_MAX_TOKENS))
    ids = handle.tokenizer(text, return_tensors="pt", truncation=False).input_ids
    total = ids.shape[1]
    if not handle.info.causal and total > max_tokens:  # keep the closing [SEP] of an encoder's input
        ids = torch.cat([ids[:, : max_tokens - 1], ids[:, -1:]], dim=1)
    return ids[:, :max_tokens], total


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def run_trace(handle: ModelHandle, text: str, max_tokens: int = DEFAULT_MAX_TOKENS, top_k: int = 10) -> Trace:
    """Tokenize (truncating above ``max_tokens``) and run the model once, keeping all attention patterns."""
    ids, total = encode_text(handle, text, max_tokens)
    result = run_patterns(handle, ids)
    attentions = torch.stack([p[0] for p in result.patterns]).float().cpu().numpy()
    top_next: list[Prediction] = []
    token_loss = None
    if handle.info.causal:
        log_probs = torch.log_softmax(result.logits[0].float(), dim=-1)
        probs, top_ids = log_probs[-1].exp().topk(top_k)
        top_next = [
            Prediction(s, int(i), float(p))
            for s, i, p in zip(token_strings(handle.tokenizer, top_ids), top_ids, probs)
        ]
        targets = ids[0, 1:].to(log_probs.device)
        token_loss = _readonly(-log_probs[:-1].gather(1, targets[:, None])[:, 0].cpu().numpy())
    token_ids = ids[0].cpu().numpy()
    return Trace(
        model_name=handle.info.name,
        text=text,
        token_ids=_readonly(token_ids),
        tokens=token_strings(handle.tokenizer, token_ids),
        attentions=_readonly(attentions),
        causal=handle.info.causal,
        n_tokens_in_text=total,
        top_next=top_next,
        token_loss=token_loss,
    )
