"""Apply a set of head interventions to a text and compare with the clean run.

The interventions are passed into each call (nothing is installed on the shared model), so
concurrent callers with different selections each get their own answer. Layers below the first
edited layer are identical to the clean run, so the edited forward starts there from the cached
clean residual stream. Reported: per-token loss before/after, the next-token top-k before/after,
the three metrics of ``analysis.methods.metrics``, the downstream heads whose attention changed most
(mean total-variation distance of their rows), and greedy continuations before/after.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from analysis.methods.reference import reference_means
from analysis.runtime.pooling import pool_pattern
from analysis.runtime.cache import ActivationCache
from analysis.runtime.forward import generate_greedy, layer_attention, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.heads import heads_frame
from analysis.runtime.interventions import EditBases, Edits, HeadIntervention, MissingBaseError, compile_selection
from analysis.methods.metrics import METRICS, Metric, MetricError, Reference, last_log_probs, metric_delta, reference, \
    token_loss
from analysis.runtime.tokens import token_strings

PATTERN_CELLS = 256  # downstream patterns of longer texts are kept as block means


@dataclass(frozen=True, eq=False)
class CleanRun:
    """The clean run of one text, kept to compare every ablation against (read-only, shareable)."""

    input_ids: torch.Tensor  # [1, tokens]
    cache: ActivationCache  # keeps resid_pre of every layer (patterns are recomputed from it)
    reference: Reference | None  # causal models: clean per-token loss and next-token log-probs
    hidden: torch.Tensor | None  # encoders: the final hidden states [tokens, d_model]


@dataclass(frozen=True, eq=False)
class AblationResult:
    """What a set of interventions changed. Loss and top-k are None/empty for encoders."""

    interventions: tuple[HeadIntervention, ...]
    tokens: list[str]
    loss_before: np.ndarray | None  # [tokens - 1]
    loss_after: np.ndarray | None
    top: pd.DataFrame  # token, token_id, before, after: union of both top-k, by max probability
    metrics: dict[str, float]  # metric name -> delta (loss, logprob, kl); encoders: hidden-state change
    downstream: pd.DataFrame  # head, layer, head_index, change: most changed heads first
    patterns_before: dict[str, np.ndarray]  # head label -> [query, key] for the listed downstream heads; texts
    patterns_after: dict[str, np.ndarray]  # longer than PATTERN_CELLS tokens: block means (``pooling``)


def clean_run(handle: ModelHandle, input_ids: torch.Tensor) -> CleanRun:
    """Run the text once without edits, keeping the residual stream (linear in the length)."""
    cache = run_with_cache(handle, input_ids, sites=("resid_pre",))
    return CleanRun(
        input_ids=input_ids,
        cache=cache,
        reference=reference(cache.logits, input_ids) if handle.info.causal else None,
        hidden=None if handle.info.causal else cache.logits[0],
    )


def source_outputs(handle: ModelHandle, source_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every layer's head outputs [tokens, heads, head_dim] on another text (what "resample" edits take)."""
    return tuple(run_with_cache(handle, source_ids, sites=("head_output",)).stack("head_output")[:, 0])


def selection_edits(handle: ModelHandle, rows: list[list[HeadIntervention]], input_ids: torch.Tensor,
                    source_ids: torch.Tensor | None = None) -> Edits:
    """Compile interventions (head-output edits and streaming heads), computing only the bases they use:
    reference means, another text's outputs."""
    modes = {edit.mode for row in rows for edit in row}
    source = None
    if "resample" in modes:
        if source_ids is None:
            raise MissingBaseError("Resampling needs a second text to take the head's output from.")
        if source_ids.shape[1] != input_ids.shape[1]:
            raise MissingBaseError(f"Resampling needs a second text of the same length: it has "
                                   f"{source_ids.shape[1]} tokens, the text has {input_ids.shape[1]}.")
        source = source_outputs(handle, source_ids)
    bases = EditBases(mean=reference_means(handle) if "mean" in modes else None, source=source)
    return compile_selection(rows, handle.info.n_layers, handle.info.n_heads, bases)


def edited_logits(handle: ModelHandle, input_ids: torch.Tensor, clean: CleanRun, edits: Edits,
                  on_pattern: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor | None:
    """Logits with ``edits``, restarted from the clean stream at the first edited layer (nothing below it can
    change); None when no edit is active (the clean run itself). ``on_pattern(layer, weights)`` sees each
    recomputed layer's attention."""
    if not edits.active_layers:
        return None
    start = min(edits.active_layers)
    return run_with_cache(handle, input_ids, edits=edits, start_layer=start,
                          start_residual=clean.cache["resid_pre", start], on_pattern=on_pattern).logits


def _top_table(handle: ModelHandle, before: torch.Tensor, after: torch.Tensor, k: int) -> pd.DataFrame:
    """Union of the top-k tokens before and after, with both probabilities, sorted by the larger one."""
    ids = torch.unique(torch.cat([before.topk(k).indices, after.topk(k).indices]))
    table = pd.DataFrame({"token": token_strings(handle.tokenizer, ids), "token_id": ids.numpy(),
                          "before": before[ids].numpy(), "after": after[ids].numpy()})
    order = np.argsort(-np.maximum(table["before"], table["after"]), kind="stable")
    return table.iloc[order].reset_index(drop=True)


def _pattern_change(clean: torch.Tensor, edited: torch.Tensor) -> np.ndarray:
    """Mean over query rows of the total-variation distance between two layers' patterns, per head [heads]."""
    return (0.5 * (clean - edited).abs().sum(-1).mean(-1)).float().cpu().numpy()


class _Downstream:
    """The ``n`` heads whose attention changed most so far, with their patterns before and after, kept while the
    edited forward passes each layer (block means above ``PATTERN_CELLS`` tokens), so no pattern is recomputed."""

    def __init__(self, change: np.ndarray, n: int) -> None:
        self.change, self.n = change, n
        self.patterns: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def see(self, layer: int, clean: torch.Tensor, edited: torch.Tensor) -> None:
        """Keep this layer's heads that enter the top ``n`` (ties: the earlier head), drop those they push out."""
        for head in np.flatnonzero(self.change[layer] > 0):
            self.patterns[(layer, int(head))] = tuple(pool_pattern(weights[head].float().cpu().numpy(), PATTERN_CELLS)
                                                      for weights in (clean, edited))
        ranked = sorted(self.patterns, key=lambda key: (-self.change[key], key))
        for key in ranked[self.n:]:
            del self.patterns[key]

    def result(self) -> tuple[pd.DataFrame, dict, dict]:
        """The heads (most changed first) and their patterns before and after, by head label."""
        n_layers, n_heads = self.change.shape
        ranked = sorted(self.patterns, key=lambda key: (-self.change[key], key))
        frame = heads_frame(n_layers, n_heads, change=self.change)
        frame = frame.iloc[[layer * n_heads + head for layer, head in ranked]].reset_index(drop=True)
        labels = list(frame["head"])
        return (frame, {label: self.patterns[key][0] for label, key in zip(labels, ranked)},
                {label: self.patterns[key][1] for label, key in zip(labels, ranked)})


def ablate(handle: ModelHandle, input_ids: torch.Tensor, interventions: list[HeadIntervention], *,
           clean: CleanRun | None = None, metric: Metric = Metric(), top_k: int = 10,
           n_downstream: int = 6, source_ids: torch.Tensor | None = None) -> AblationResult:
    """Run the text with ``interventions`` and compare with the clean run (computed if not given).

    ``metric`` supplies the loss span and the log-prob target used for the three reported metrics;
    ``source_ids`` is the text of the same length that "resample" edits take head outputs from.
    """
    clean = clean or clean_run(handle, input_ids)
    edits = selection_edits(handle, [interventions], input_ids, source_ids)
    change = np.zeros((handle.info.n_layers, handle.info.n_heads))
    kept = _Downstream(change, n_downstream)

    def compare_layer(layer: int, weights: torch.Tensor) -> None:
        clean_weights = layer_attention(handle, input_ids, layer, clean.cache["resid_pre", layer])
        change[layer] = _pattern_change(clean_weights[0], weights[0])
        kept.see(layer, clean_weights[0], weights[0])

    output = edited_logits(handle, input_ids, clean, edits, compare_layer)
    downstream, patterns_before, patterns_after = kept.result()
    common = dict(interventions=tuple(interventions), tokens=token_strings(handle.tokenizer, input_ids[0]),
                  downstream=downstream, patterns_before=patterns_before, patterns_after=patterns_after)
    ref = clean.reference
    if ref is None:
        hidden = clean.hidden if output is None else output[0]
        shift = (hidden - clean.hidden).norm(dim=-1) / clean.hidden.norm(dim=-1)
        return AblationResult(loss_before=None, loss_after=None, top=pd.DataFrame(),
                              metrics={"hidden_change": float(shift.mean())}, **common)
    if output is None:
        loss_after, after_log_probs, metrics = ref.token_loss, ref.last_log_probs, dict.fromkeys(METRICS, 0.0)
    else:
        loss_after, after_log_probs = token_loss(output, input_ids)[0], last_log_probs(output)[0]
        metrics = {name: float(metric_delta(output, input_ids, Metric(name, metric.span, metric.target_id), ref)[0])
                   for name in METRICS}
    return AblationResult(
        loss_before=ref.token_loss.numpy(), loss_after=loss_after.numpy(),
        top=_top_table(handle, ref.last_log_probs.exp(), after_log_probs.exp(), top_k), metrics=metrics, **common,
    )


def greedy_generate(handle: ModelHandle, input_ids: torch.Tensor, interventions: list[HeadIntervention],
                    n_tokens: int, source_ids: torch.Tensor | None = None) -> list[int]:
    """The ``n_tokens`` greedy next tokens with the interventions applied at every step (causal models).

    Runs the model's own forward with its KV cache, so each new token costs one position; the edits travel
    with every call. "resample" edits take the source text's outputs at the prompt's positions and leave
    generated positions alone (the source has none there).
    """
    if not handle.info.causal:
        raise MetricError("Generation needs a causal language model.")
    return generate_greedy(handle, input_ids, selection_edits(handle, [interventions], input_ids, source_ids),
                           n_tokens)


def greedy_generate_uncached(handle: ModelHandle, input_ids: torch.Tensor, interventions: list[HeadIntervention],
                             n_tokens: int) -> list[int]:
    """The reference for ``greedy_generate``: a full forward over the whole sequence for every new token."""
    edits = selection_edits(handle, [interventions], input_ids)
    edits = edits if edits.active_layers else None
    ids, generated = input_ids, []
    for _ in range(n_tokens):
        next_id = int(run_with_cache(handle, ids, edits=edits).logits[0, -1].argmax())
        generated.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]], device=ids.device)], dim=1)
    return generated
