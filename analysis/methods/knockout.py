"""A lab selection tested on many prompts: the same knockout on every row of a dataset, one line per row.

A circuit claim ("these heads carry the behaviour") is tested by knocking the heads out on many prompts and
reporting the mean effect with its 95 % interval (``analysis.methods.aggregate.value_summary``), as ablation
studies do (Michel et al. 2019; Wang et al. 2022 for IOI). Per row: the clean and the edited value of the
lab's three metrics (``analysis.methods.metrics``): mean next-token loss over the text, log-prob of the target
at the last position (a pair row's target, else the clean model's top prediction) and KL(clean ‖ edited) of the
next-token distribution, which is 0 for the clean run. "resample" heads take their output from the row's
corrupted prompt (pair rows only); "stream" heads see the first tokens and a recent window.
"""
from __future__ import annotations

import torch

from analysis.heads import HeadSpecError
from analysis.methods.ablation import clean_run, edited_logits, selection_edits
from analysis.methods.ablation_spec import parse_ablation
from analysis.methods.metrics import METRICS, Metric, MetricError, metric_delta, with_default_target
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.tokens import token_strings

KNOCKOUT_VALUES = {"loss_delta": "loss", "logprob_delta": "logprob", "kl": "kl"}  # column -> its metric (METRICS)
RESAMPLE_NEEDS_PAIRS = ("Resampled heads take their output from a second prompt of the same length: sweep pair "
                        "rows (IOI pairs: each row's corrupted prompt), or pick another mode for those heads.")


def knockout_selection(spec: str, n_layers: int, n_heads: int, has_pairs: bool) -> list[HeadIntervention]:
    """The interventions a selection string names, checked for a sweep, in (layer, head) order (so the same heads
    written in another order make the same job); raises HeadSpecError with a message (no head, a bad item, or
    resampling without a corrupted prompt per row)."""
    selection = parse_ablation(spec, n_layers, n_heads)
    if not selection:
        raise HeadSpecError("The selection names no head: write heads as in the lab, e.g. L1H5:zero:0, L3H*.")
    if not has_pairs and any(edit.mode == "resample" for edit in selection):
        raise HeadSpecError(RESAMPLE_NEEDS_PAIRS)
    return sorted(selection, key=lambda edit: (edit.layer, edit.head))


def knockout(handle: ModelHandle, input_ids: torch.Tensor, interventions: list[HeadIntervention],
             target_id: int | None = None, source_ids: torch.Tensor | None = None) -> dict[str, float | int | str]:
    """One row's clean and edited loss and target log-prob, their deltas and the KL, for ``interventions``.

    ``target_id`` None: the clean model's top prediction; ``source_ids``: the text "resample" heads read.
    """
    if not handle.info.causal:
        raise MetricError("A knockout sweep measures next-token loss: it needs a causal language model.")
    clean = clean_run(handle, input_ids)
    ref = clean.reference
    edits = selection_edits(handle, [interventions], input_ids, source_ids)
    output = edited_logits(handle, input_ids, clean, edits)
    output = clean.cache.logits if output is None else output
    metric = with_default_target(Metric("logprob", target_id=target_id), ref)
    delta = {name: float(metric_delta(output, input_ids, Metric(name, target_id=metric.target_id), ref)[0])
             for name in METRICS}
    loss, logprob = float(ref.token_loss.mean()), float(ref.last_log_probs[metric.target_id])
    return {"tokens": int(input_ids.shape[1]), "target": token_strings(handle.tokenizer, [metric.target_id])[0],
            "loss_clean": loss, "loss_edited": loss + delta["loss"], "loss_delta": delta["loss"],
            "logprob_clean": logprob, "logprob_edited": logprob + delta["logprob"], "logprob_delta": delta["logprob"],
            "kl": delta["kl"]}
