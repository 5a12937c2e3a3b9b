"""What activation patching measures: one number per run at the last position, normalised between two runs.

Three metrics, computed from the next-token logits at the last position:

- ``logit_diff``: logit(target) − logit(distractor), the standard patching metric (Wang et al. 2022, the IOI
  circuit; Heimersheim & Nanda 2024 recommend it because it is linear in the final residual stream);
- ``logprob``: the raw log-probability of the target token;
- ``kl``: KL(clean ‖ run) of the next-token distribution (0 for the clean run).

A patched run's value v is normalised as ``(v − v_corrupted) / (v_clean − v_corrupted)``: 0 = the corrupted
run, 1 = the clean run, whatever the metric and the direction of patching.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from analysis.methods.metrics import MetricError, last_log_probs

PATCHING_METRICS: dict[str, str] = {
    "logit_diff": "logit difference (target − distractor)",
    "logprob": "log-prob of the target",
    "kl": "KL(clean ‖ patched)",
}
_SAME_VALUE = 1e-6  # clean and corrupted closer than this: nothing to normalise against


@dataclass(frozen=True)
class PatchingMetric:
    """Which metric, and its tokens: the target (default: the clean run's top prediction) and, for the logit
    difference, the distractor (default: the corrupted run's top prediction)."""

    name: str = "logit_diff"
    target_id: int | None = None
    distractor_id: int | None = None

    def __post_init__(self) -> None:
        if self.name not in PATCHING_METRICS:
            raise MetricError(f"Unknown patching metric '{self.name}'; use one of {', '.join(PATCHING_METRICS)}.")


def resolve_metric(metric: PatchingMetric, clean_logits: torch.Tensor, corrupted_logits: torch.Tensor
                   ) -> PatchingMetric:
    """The metric with default tokens filled in from the clean and corrupted last-position logits [vocab]."""
    target = metric.target_id if metric.target_id is not None else int(clean_logits.argmax())
    distractor = metric.distractor_id
    if distractor is None:
        ranked = corrupted_logits.topk(2).indices.tolist()
        distractor = ranked[1] if ranked[0] == target else ranked[0]
    if metric.name == "logit_diff" and target == distractor:
        raise MetricError("The target and the distractor are the same token: pick two different tokens.")
    return replace(metric, target_id=target, distractor_id=distractor)


def metric_values(last_logits: torch.Tensor, metric: PatchingMetric, clean_log_probs: torch.Tensor) -> torch.Tensor:
    """The metric per row of ``last_logits`` [batch, 1 or more, vocab] (its last position); float32 [batch].

    ``metric`` must be resolved; ``clean_log_probs`` [vocab] are the clean run's (used by KL).
    """
    if metric.name == "logit_diff":
        logits = last_logits[:, -1].float()
        return logits[:, metric.target_id] - logits[:, metric.distractor_id]
    log_probs = last_log_probs(last_logits)
    if metric.name == "logprob":
        return log_probs[:, metric.target_id]
    clean = clean_log_probs.to(log_probs)
    return (clean.exp() * (clean - log_probs)).sum(-1)


@dataclass(frozen=True)
class Baseline:
    """The metric on the two unpatched runs; ``normalise`` maps a value to 0 = corrupted, 1 = clean."""

    clean: float
    corrupted: float

    def __post_init__(self) -> None:
        if abs(self.clean - self.corrupted) < _SAME_VALUE:
            raise MetricError(f"The clean and corrupted prompts give the same metric value ({self.clean:.4g}): "
                              "patching has nothing to restore. Pick prompts the model answers differently, or "
                              "another target or distractor.")

    def normalise(self, values):
        """(value − corrupted) / (clean − corrupted), elementwise."""
        return (values - self.corrupted) / (self.clean - self.corrupted)
