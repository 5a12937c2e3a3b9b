"""Circuits, cached under the one memory budget and keyed by the request (model, prompts, cap, metric and tokens).

The two runs keeping every node's write, each method's edge scores, faithfulness values and the exact
refinement are kept separately, so moving the edge slider redraws from stored scores at once and only a new
circuit size asks for a new faithfulness run. A circuit is chosen from the pair's own scores, or from a dataset's
mean scores (``DatasetScores``, the summary of a finished circuit job, keyed by the job's id).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.memory_budget import memoise
from analysis.methods.circuit_graph import select
from analysis.methods.edge_attribution import EdgeRuns, edge_scores, prepare_edge_runs, refine
from analysis.methods.faithfulness import circuit_values, faithfulness_curve
from analysis.methods.path_patching import path_patching, receiver_inputs
from components.caches.models import cached_model, with_spinner
from components.caches.patching import PatchRequest


def circuit_request(request: PatchRequest) -> PatchRequest:
    """The patching page's request as a circuit's cache key (circuits patch the clean run: no direction)."""
    return request._replace(direction="noise")


@memoise(on_miss=with_spinner("Running both prompts, keeping every node's write…"))
def circuit_runs(request: PatchRequest) -> EdgeRuns:
    """The clean and corrupted runs; raises PatchingError or MetricError with a message for people."""
    return prepare_edge_runs(*request.arguments())


@memoise(on_miss=with_spinner("Scoring every edge (forward and backward passes)…"))
def cached_scores(request: PatchRequest, method: str, steps: int) -> pd.DataFrame:
    """The edge table of ``method`` (eap or eap-ig) in the graph's order."""
    return edge_scores(cached_model(request.model), circuit_runs(request), method, steps)


@dataclass(frozen=True)
class DatasetScores:
    """Mean edge scores over a dataset's pairs (``named_edge_summary`` of a finished circuit job), in the graph's
    edge order; compared and hashed by the job's id, so caches keyed by it stay small."""

    job_id: str
    table: pd.DataFrame = field(compare=False)


def circuit_table(request: PatchRequest, method: str, steps: int,
                  dataset: DatasetScores | None = None) -> pd.DataFrame:
    """The score table a circuit is chosen from: the pair's own ``method`` scores, or the dataset's means."""
    return cached_scores(request, method, steps) if dataset is None else dataset.table


def chosen_edges(request: PatchRequest, method: str, steps: int, how: str, n_edges: int,
                 dataset: DatasetScores | None = None) -> np.ndarray:
    """The pruned circuit (a mask over the edge table) of ``n_edges`` edges chosen by ``how``."""
    table = circuit_table(request, method, steps, dataset)
    return select(circuit_runs(request).graph, table["score"].fillna(0.0).to_numpy(), how,
                  min(n_edges, len(table)))


@memoise(on_miss=with_spinner("Running the model with every edge outside the circuit ablated…"))
def cached_faithfulness(request: PatchRequest, method: str, steps: int, how: str, n_edges: int,
                        ablation: str, dataset: DatasetScores | None = None) -> float:
    """The normalised metric of the chosen circuit on the request's pair (1 = clean run, 0 = corrupted run)."""
    table = circuit_table(request, method, steps, dataset)
    mask = chosen_edges(request, method, steps, how, n_edges, dataset)
    return float(circuit_values(cached_model(request.model), circuit_runs(request), table, [mask], ablation)[0])


@memoise(on_miss=with_spinner("Faithfulness of EAP's and EAP-IG's top circuits at several sizes…"))
def cached_curve(request: PatchRequest, steps: int, ablation: str) -> pd.DataFrame:
    """Faithfulness against circuit size for EAP and EAP-IG (method, n_edges, kept, faithfulness)."""
    tables = {"EAP": cached_scores(request, "eap", 1), f"EAP-IG ({steps} steps)": cached_scores(request, "eap-ig",
                                                                                                 steps)}
    return faithfulness_curve(cached_model(request.model), circuit_runs(request), tables, ablation=ablation)


@memoise(on_miss=with_spinner("Patching the top edges one at a time, exactly…"))
def cached_refinement(request: PatchRequest, method: str, steps: int, top_k: int,
                      dataset: DatasetScores | None = None) -> pd.DataFrame:
    """The ``top_k`` edges by |score|, patched exactly on the request's pair (``score``), with the method's (or the
    dataset's mean) ``estimate``."""
    table = circuit_table(request, method, steps, dataset)[["source", "target", "input", "score"]]
    return refine(cached_model(request.model), circuit_runs(request), table, top_k)


@memoise(on_miss=with_spinner("Path patching: every sender into the receivers, the rest of the model clean…"))
def cached_paths(request: PatchRequest, receivers: str, inputs: str) -> pd.DataFrame:
    """Every sender's path effect through ``receivers`` (their ``inputs``: letters of q, k, v); raises
    CircuitError with a message for people."""
    runs = circuit_runs(request)
    return path_patching(cached_model(request.model), runs, receiver_inputs(runs.graph, receivers, tuple(inputs)))
