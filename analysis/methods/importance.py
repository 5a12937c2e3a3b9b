"""Head importance two ways (Michel et al. 2019, "Are Sixteen Heads Really Better than One?").

- Ablation importance, exact: the metric's change when one head's output is set to zero (or to its
  reference mean, ``analysis.methods.reference``), for every head. A head of layer l cannot change anything below l,
  so the clean residual stream is computed once and, for the heads of layer l, only layers ≥ l are
  re-run, with that layer's heads batched (one batch row per head). ``ablation_importance_naive``
  runs one full forward per head and is kept as the reference the fast path must equal.
- Gradient importance: |∂M/∂ξ_h| for a gate ξ_h = 1 on every head's output, from one forward and one
  backward. For KL the gradient is zero at the clean model (KL is minimal there), so the estimate is
  the second-order term restricted to the top token: ½·p(ŷ)·(∂ log p(ŷ)/∂ξ_h)².
``rank_correlation`` is Spearman's ρ between two importance columns.
Results are DataFrames with one row per head: "head" (L3H2), "layer", "head_index" and values.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.heads import heads_frame
from analysis.methods.reference import mean_bases
from analysis.runtime.interventions import EditBases, HeadIntervention, compile_edits, gate_edits
from analysis.methods.metrics import Metric, MetricError, last_log_probs, last_logits_needed, loss_slice, \
    metric_delta, reference, token_loss, with_default_target

ABLATION_MODES = ("zero", "mean")
ROW_BUDGET = 2 ** 26  # logits elements per batched call (256 MB of float32)

Progress = Callable[[int, int], None]


def _check(handle: ModelHandle, mode: str) -> None:
    if not handle.info.causal:
        raise MetricError("Importance needs a causal language model (loss, log-prob and KL are next-token metrics).")
    if mode not in ABLATION_MODES:
        raise MetricError(f"Unknown ablation mode '{mode}'; use zero or mean.")


def _bases(handle: ModelHandle, mode: str) -> EditBases:
    return mean_bases(handle) if mode == "mean" else EditBases()


def _ablation_frame(handle: ModelHandle, deltas: np.ndarray) -> pd.DataFrame:
    info = handle.info
    return heads_frame(info.n_layers, info.n_heads, delta=deltas, importance=np.abs(deltas))


def ablation_importance(handle: ModelHandle, input_ids: torch.Tensor, metric: Metric = Metric(),
                        mode: str = "zero", progress: Progress | None = None) -> pd.DataFrame:
    """Exact Δmetric of ablating each head alone, reusing the clean prefix below each head's layer.

    ``progress(done_layers, n_layers)`` is called after each layer; an exception raised from it stops the
    computation (that is how a job is cancelled). Columns: delta (signed), importance (|delta|).
    """
    _check(handle, mode)
    info = handle.info
    clean = run_with_cache(handle, input_ids, sites=("resid_pre",))
    ref = reference(clean.logits, input_ids)
    metric = with_default_target(metric, ref)
    bases = _bases(handle, mode)
    rows_per_call = max(1, min(info.n_heads, ROW_BUDGET // (input_ids.shape[1] * clean.logits.shape[-1])))
    deltas = np.zeros((info.n_layers, info.n_heads))
    for layer in range(info.n_layers):
        for first in range(0, info.n_heads, rows_per_call):
            heads = range(first, min(first + rows_per_call, info.n_heads))
            edits = compile_edits([[HeadIntervention(layer, h, mode, 0.0)] for h in heads], info.n_layers, info.n_heads,
                                  bases)
            logits = run_with_cache(handle, input_ids, edits=edits, start_layer=layer,
                                    start_residual=clean["resid_pre", layer],
                                    last_logits=last_logits_needed(metric)).logits
            deltas[layer, heads.start:heads.stop] = metric_delta(logits, input_ids, metric, ref).cpu().numpy()
        if progress is not None:
            progress(layer + 1, info.n_layers)
    return _ablation_frame(handle, deltas)


def ablation_importance_naive(handle: ModelHandle, input_ids: torch.Tensor, metric: Metric = Metric(),
                              mode: str = "zero", progress: Progress | None = None) -> pd.DataFrame:
    """The reference: one full forward per head (what ``ablation_importance`` must reproduce)."""
    _check(handle, mode)
    info = handle.info
    clean = run_with_cache(handle, input_ids)
    ref = reference(clean.logits, input_ids)
    metric = with_default_target(metric, ref)
    bases = _bases(handle, mode)
    deltas = np.zeros((info.n_layers, info.n_heads))
    for layer in range(info.n_layers):
        for head in range(info.n_heads):
            edits = compile_edits([[HeadIntervention(layer, head, mode, 0.0)]], info.n_layers, info.n_heads, bases)
            logits = run_with_cache(handle, input_ids, edits=edits, last_logits=last_logits_needed(metric)).logits
            deltas[layer, head] = float(metric_delta(logits, input_ids, metric, ref)[0])
        if progress is not None:
            progress(layer + 1, info.n_layers)
    return _ablation_frame(handle, deltas)


def gradient_importance(handle: ModelHandle, input_ids: torch.Tensor, metric: Metric = Metric(),
                        mode: str = "zero") -> pd.DataFrame:
    """∂M/∂ξ for a gate on every head at ξ = 1, from one forward and one backward.

    Columns: gradient (∂M/∂ξ; for KL ∂ log p(ŷ)/∂ξ), estimate (the Taylor estimate of the ablation delta:
    −gradient, or ½·p(ŷ)·gradient² for KL) and importance (|estimate|).
    """
    _check(handle, mode)
    info = handle.info
    gates = torch.ones(info.n_layers, info.n_heads, requires_grad=True)
    logits = run_with_cache(handle, input_ids, edits=gate_edits(gates, mode, _bases(handle, mode)), grad=True).logits
    with torch.no_grad():
        ref = reference(logits, input_ids)
    metric = with_default_target(metric, ref)
    if metric.name == "loss":
        objective = token_loss(logits, input_ids)[0, loss_slice(metric.span, input_ids.shape[1])].mean()
    else:
        target = metric.target_id if metric.name == "logprob" else ref.top_id
        objective = last_log_probs(logits)[0, target]
    (gradient,) = torch.autograd.grad(objective, gates)
    gradient = gradient.numpy()
    if metric.name == "kl":
        estimate = 0.5 * float(ref.last_log_probs[ref.top_id].exp()) * gradient ** 2
    else:
        estimate = -gradient
    return heads_frame(info.n_layers, info.n_heads, gradient=gradient, estimate=estimate,
                       importance=np.abs(estimate))


def rank_correlation(first: pd.Series | np.ndarray, second: pd.Series | np.ndarray) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties get their average rank)."""
    ranks = [pd.Series(np.asarray(values, dtype=np.float64)).rank() for values in (first, second)]
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])
