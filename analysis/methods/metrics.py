"""How much an intervention changed a causal LM's output, measured against the clean run.

Three metrics, each a number per batch row (one row per intervention set):
- ``loss``: Δ mean next-token loss over the text, or over a span of predicted tokens;
- ``logprob``: Δ log-probability of a target token at the last position (default: the clean
  model's top prediction there);
- ``kl``: KL(clean ‖ edited) of the next-token distribution at the last position.
These are the quantities ablation importance (Michel et al. 2019, "Are Sixteen Heads Really Better
than One?") ranks heads by. A span ``(start, end)`` names predicted-token positions ``start..end-1``
(position p is predicted at position p-1); ``end = 0`` means the end of the text.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

METRICS: dict[str, str] = {
    "loss": "Δ loss",
    "logprob": "Δ log-prob of the target token",
    "kl": "KL of the next-token distribution",
}


class MetricError(ValueError):
    """A metric that cannot be computed on this text (empty span, multi-token target, encoder model)."""


@dataclass(frozen=True)
class Metric:
    """Which metric, and its options: the span (for loss) and the target token id (for logprob)."""

    name: str = "loss"
    span: tuple[int, int] = (0, 0)
    target_id: int | None = None

    def __post_init__(self) -> None:
        if self.name not in METRICS:
            raise MetricError(f"Unknown metric '{self.name}'; use one of {', '.join(METRICS)}.")


@dataclass(frozen=True, eq=False)
class Reference:
    """The clean run's values every delta is taken against."""

    token_loss: torch.Tensor  # [tokens - 1] float32: loss of predicting token i+1 at position i
    last_log_probs: torch.Tensor  # [vocab] float32: next-token log-probs at the last position

    @property
    def top_id(self) -> int:
        """The clean model's top prediction at the last position."""
        return int(self.last_log_probs.argmax())


def token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Per-token next-token loss [batch, tokens - 1] of logits [batch, tokens, vocab] on ids [1, tokens]."""
    batch, length, vocab = logits.shape
    targets = input_ids[0, 1:].to(logits.device).repeat(batch)
    losses = F.cross_entropy(logits[:, :-1].float().reshape(-1, vocab), targets, reduction="none")
    return losses.view(batch, length - 1)


def last_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs at the last position, [batch, vocab] float32."""
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


def reference(logits: torch.Tensor, input_ids: torch.Tensor) -> Reference:
    """The clean reference from the clean logits [1, tokens, vocab]."""
    return Reference(token_loss(logits, input_ids)[0].detach(), last_log_probs(logits)[0].detach())


def loss_slice(span: tuple[int, int], n_tokens: int) -> slice:
    """The per-token-loss indices of a span of predicted positions; raises MetricError if it is empty."""
    start, end = span
    end = n_tokens if end <= 0 else min(end, n_tokens)
    start = max(start, 1)
    if start >= end:
        raise MetricError(f"The loss span {span[0]}–{span[1]} holds no predicted token of this "
                          f"{n_tokens}-token text: pick positions between 1 and {n_tokens}.")
    return slice(start - 1, end - 1)


def with_default_target(metric: Metric, ref: Reference) -> Metric:
    """The metric with its target set to the clean top prediction if none was chosen."""
    return metric if metric.target_id is not None else replace(metric, target_id=ref.top_id)


def last_logits_needed(metric: Metric) -> int | None:
    """How many final positions the metric reads (log-prob and KL: the last one); None for all."""
    return None if metric.name == "loss" else 1


def metric_delta(logits: torch.Tensor, input_ids: torch.Tensor, metric: Metric, ref: Reference) -> torch.Tensor:
    """The metric's change per row of ``logits`` [batch, tokens, vocab] relative to the clean ``ref``."""
    if metric.name == "loss":
        window = loss_slice(metric.span, input_ids.shape[1])
        return token_loss(logits, input_ids)[:, window].mean(1) - ref.token_loss[window].mean()
    log_probs = last_log_probs(logits)
    if metric.name == "logprob":
        target = with_default_target(metric, ref).target_id
        return log_probs[:, target] - ref.last_log_probs[target]
    clean = ref.last_log_probs.to(log_probs.device)
    return (clean.exp() * (clean - log_probs)).sum(-1)


def resolve_target(tokenizer, text: str) -> tuple[int | None, str | None]:
    """The token id of a typed target (e.g. ' Mary'); empty means the default. Returns (id, warning)."""
    if not text:
        return None, None
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        return None, f"The target '{text}' has no tokens; using the top prediction."
    if len(ids) > 1:
        first = tokenizer.decode(ids[:1])
        return ids[0], f"The target '{text}' is {len(ids)} tokens; using its first token '{first}'."
    spaced = tokenizer.encode(" " + text, add_special_tokens=False) if not text[0].isspace() else ids
    if len(spaced) == 1 and spaced != ids:
        return ids[0], (f"'{text}' is used as typed, without a leading space; a word after a space in a text is "
                        f"the token ' {text}' (type it with the space if that is what you mean).")
    return ids[0], None
