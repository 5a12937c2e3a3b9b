"""Edge attribution: how much each edge of the graph carries a behaviour, between a clean and a corrupted prompt.

An edge u → d is the upstream node u's write as the downstream input d reads it (``analysis.methods.
circuit_graph``). Its activation difference is Δ_u = write_u(corrupted) − write_u(clean). Three scores, in the
units of the raw patching metric (``analysis.methods.patching_metric``; logit difference by default), each
estimating metric(clean run with that one edge patched from the corrupted run) − metric(clean run):

- ``eap`` (Syed et al. 2023, edge attribution patching): Δ_u · ∂metric/∂(input of d), summed over positions and
  the model width, for every edge from two forwards without gradients and one with (the gradient with respect to
  the stream as head d's query, key or value reads it comes from the model's own autograd, per head).
- ``eap-ig`` (Hanna et al. 2024, "Have Faith in Faithfulness"): the gradient averaged over ``steps`` points on
  the straight line from the corrupted to the clean input embeddings (integrated gradients, Sundararajan et al.
  2017, at points k/steps, k = 1…steps), so one step is EAP.
- ``exact``: each of the ``top_k`` edges with the largest EAP-IG |score| patched on its own: the downstream
  input is clean input − clean write_u + corrupted write_u, everything else clean, and everything downstream
  recomputed (batched, restarting at the downstream layer).

KL has zero gradient at the clean run, so EAP scores of KL are all zero; use the logit difference or log-prob.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from analysis.methods.circuit_graph import CircuitGraph, graph_of
from analysis.methods.patching_metric import Baseline, PatchingMetric, metric_values, resolve_metric
from analysis.methods.patching_runs import PatchingError, check_lengths, check_patchable
from analysis.runtime.handle import ModelHandle
from analysis.runtime.node_inputs import EdgePatch, NodeWrites, edge_patched_logits, node_input_gradients, \
    node_writes

METHODS: dict[str, str] = {"eap": "EAP (one gradient)", "eap-ig": "EAP-IG (integrated gradients)",
                           "exact": "exact edge patching (top edges)"}
SCORE_METHODS = {name: METHODS[name] for name in ("eap", "eap-ig")}  # a score for every edge
MAX_STEPS = 50
CIRCUIT_TOKENS = 128  # longer prompts: every node input's gradient and every edge grow with the length

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class EdgeRuns:
    """The clean and corrupted runs' node writes, the model's graph and the resolved metric."""

    graph: CircuitGraph
    clean: NodeWrites
    corrupted: NodeWrites
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    metric: PatchingMetric  # target and distractor resolved
    baseline: Baseline
    clean_log_probs: torch.Tensor

    def values(self, last_logits: torch.Tensor) -> torch.Tensor:
        """The raw metric per row of last-position logits [rows, vocab]."""
        return metric_values(last_logits[:, None], self.metric, self.clean_log_probs)

    @property
    def deltas(self) -> torch.Tensor:
        """Δ write per source node, corrupted − clean: [sources, tokens, d_model]."""
        return self.corrupted.writes - self.clean.writes


def prepare_edge_runs(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                      metric: PatchingMetric) -> EdgeRuns:
    """Run both prompts once, keeping every node's write; resolve the metric and its two baseline values."""
    check_patchable(handle)
    check_lengths(handle, clean_ids, corrupted_ids)
    if not (handle.parts.supports_head_writes and handle.parts.supports_restart):
        raise PatchingError(f"Edge attribution needs each head's write and the layer restart, which "
                            f"{handle.info.name} does not allow: " + " ".join(handle.info.notes))
    clean, corrupted = node_writes(handle, clean_ids), node_writes(handle, corrupted_ids)
    metric = resolve_metric(metric, clean.last_logits, corrupted.last_logits)
    clean_log_probs = torch.log_softmax(clean.last_logits.float(), dim=-1)
    both = metric_values(torch.stack([clean.last_logits, corrupted.last_logits])[:, None], metric, clean_log_probs)
    graph = graph_of(handle.info, handle.parts.parallel_residual)
    return EdgeRuns(graph, clean, corrupted, clean_ids, corrupted_ids, metric,
                    Baseline(float(both[0]), float(both[1])), clean_log_probs)


def _metric_of(runs: EdgeRuns) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda last_logits: runs.values(last_logits.reshape(-1, last_logits.shape[-1]))[0]


def integrated_gradients(handle: ModelHandle, runs: EdgeRuns, steps: int,
                         progress: Progress | None = None) -> torch.Tensor:
    """∂metric/∂(every node input) [inputs, tokens, d_model], averaged over ``steps`` points from the corrupted to
    the clean embeddings (k/steps, k = 1…steps; one step: the gradient at the clean run); ``progress(done, steps)``
    after each point."""
    if not 1 <= steps <= MAX_STEPS:
        raise PatchingError(f"Pick between 1 and {MAX_STEPS} integration steps (asked for {steps}).")
    clean, corrupted = runs.clean.writes[0], runs.corrupted.writes[0]
    total = None
    for step in range(1, steps + 1):
        embedding = corrupted + (step / steps) * (clean - corrupted)
        gradients = node_input_gradients(handle, embedding, _metric_of(runs))
        total = gradients if total is None else total + gradients
        if progress is not None:
            progress(step, steps)
    return total / steps


def score_matrix(runs: EdgeRuns, gradients: torch.Tensor) -> np.ndarray:
    """Δ_u · gradient_d summed over tokens and width, for every (source, input) pair: [sources, inputs]."""
    deltas = runs.deltas.flatten(1).double()
    scores = deltas @ gradients.flatten(1).double().T
    return np.where(runs.graph.valid, scores.numpy(), 0.0)


def _edge_patches(runs: EdgeRuns, edges: pd.DataFrame, scale: float = 1.0) -> list[EdgePatch]:
    """The exact patch of each edge-table row (its source's Δ write into its target input), times ``scale``."""
    graph = runs.graph
    source_index = {name: index for index, name in enumerate(graph.sources)}
    input_index = {(item.target, item.input): index for index, item in enumerate(graph.inputs)}
    patches = []
    for row in edges.itertuples(index=False):
        item = graph.inputs[input_index[(row.target, row.input)]]
        head = (item.heads[0] if item.kind == "q" else item.heads[0] // graph.group_size) if item.heads else -1
        patches.append(EdgePatch(item.layer, item.kind, head, scale * runs.deltas[source_index[row.source]]))
    return patches


def exact_edge_values(handle: ModelHandle, runs: EdgeRuns, edges: pd.DataFrame, scale: float = 1.0,
                      restart: bool = True, progress: Progress | None = None) -> np.ndarray:
    """The raw metric with each edge (a row of the edge table) patched alone, ``scale`` times its Δ write.

    ``restart`` False runs one full forward per edge (the reference the batched restart must equal).
    """
    logits = edge_patched_logits(handle, runs.clean, runs.clean_ids, _edge_patches(runs, edges, scale), restart,
                                 progress)
    return runs.values(logits).cpu().numpy().astype(np.float64)


def edge_attribution(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                     metric: PatchingMetric, method: str = "eap", steps: int = 5, top_k: int = 200,
                     progress: Progress | None = None) -> pd.DataFrame:
    """Score every edge of the model's graph: one row per edge with source, target, input (q, k, v or empty)
    and score (the estimated change of the raw metric when that edge alone is patched from the corrupted run).

    ``method``: "eap", "eap-ig" (``steps`` integration points) or "exact" (the ``top_k`` edges by EAP-IG
    |score|, patched exactly; only those rows, with the EAP-IG ``estimate``, sorted by |score|). The "eap" and
    "eap-ig" tables list every edge in the graph's order (``CircuitGraph.edge_index``), which circuit selection
    (``analysis.methods.circuit_graph``) and faithfulness expect.
    """
    if method not in METHODS:
        raise PatchingError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    runs = prepare_edge_runs(handle, clean_ids, corrupted_ids, metric)
    return edge_scores(handle, runs, method, steps, top_k, progress)


def edge_scores(handle: ModelHandle, runs: EdgeRuns, method: str, steps: int = 5, top_k: int = 200,
                progress: Progress | None = None) -> pd.DataFrame:
    """``edge_attribution`` on prepared runs; ``progress`` counts integration points (eap, eap-ig) or exact edge
    patches (exact)."""
    gradients = integrated_gradients(handle, runs, 1 if method == "eap" else steps,
                                     progress if method != "exact" else None)
    table = runs.graph.edge_table(score_matrix(runs, gradients))
    return table if method != "exact" else refine(handle, runs, table, top_k, progress)


def refine(handle: ModelHandle, runs: EdgeRuns, table: pd.DataFrame, top_k: int,
           progress: Progress | None = None) -> pd.DataFrame:
    """The ``top_k`` rows of a score table by |score|, each edge patched exactly: ``score`` is the exact change
    of the raw metric, ``estimate`` the table's score; sorted by |score|."""
    top = table.loc[table["score"].abs().sort_values(ascending=False, kind="stable").index[:top_k]].copy()
    top["estimate"] = top["score"]
    top["score"] = exact_edge_values(handle, runs, top, progress=progress) - runs.baseline.clean
    return top.reindex(top["score"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)
