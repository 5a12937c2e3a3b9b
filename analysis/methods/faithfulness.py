"""Faithfulness of a circuit: the model run with every edge outside the circuit ablated.

Every node reads its own copy of the residual stream (``analysis.runtime.node_inputs``): for each downstream
input d, the writes of the upstream nodes u whose edge u → d is in the circuit are this run's own (recomputed
from the patched nodes below), the writes of the others are ablated — taken from the corrupted run
("patch", the default; Hanna et al. 2024, Conmy et al. 2023) or replaced by their mean over the corrupted run's
positions ("mean"). The metric at the last position is normalised like patching: 1 = the clean run, 0 = the
corrupted run. With every edge in the circuit the run is the clean run (1); with none and "patch", every node
reads the corrupted stream and the run is the corrupted run (0).

Conclusions depend on the ablation (Miller et al. 2024; ACDC's IOI AUC falls from 0.87 with resampling to 0.23
with zero ablation), so it is an option. The faithfulness curve evaluates the top-n circuits of a score table for
several n (all in one batched run, one row per circuit); its AUC is the trapezoidal area under faithfulness over
log10 of the number of edges, divided by the log range: the mean faithfulness across circuit sizes on the
curve's log scale (1: as faithful as the clean model at every size).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.methods.circuit_graph import CircuitError, CircuitGraph, prune, top_n
from analysis.methods.edge_attribution import EdgeRuns, prepare_edge_runs
from analysis.methods.patching_metric import PatchingMetric
from analysis.methods.patching_runs import PatchingError
from analysis.runtime.handle import ModelHandle
from analysis.runtime.node_inputs import node_input_logits

ABLATIONS: dict[str, str] = {"patch": "patched from the corrupted prompt", "mean": "mean over the corrupted prompt"}
CURVE_SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
ROWS_PER_CALL = 8  # circuits evaluated together


def _base_writes(runs: EdgeRuns, ablation: str) -> torch.Tensor:
    """What an ablated edge carries, per source: [sources, tokens, d_model]."""
    if ablation == "patch":
        return runs.corrupted.writes
    if ablation == "mean":
        return runs.corrupted.writes.mean(1, keepdim=True).expand_as(runs.corrupted.writes)
    raise PatchingError(f"Unknown ablation '{ablation}'; use one of {', '.join(ABLATIONS)}.")


class _CircuitStreams:
    """The stream each node input reads in a circuit run: the ablated stream plus, for every kept edge, the
    upstream node's write in this run minus its ablated write."""

    def __init__(self, runs: EdgeRuns, masks: np.ndarray, ablation: str):
        graph = runs.graph
        self.graph, self.corrupted = graph, runs.corrupted
        self.base = _base_writes(runs, ablation)  # [sources, t, d]
        self.keep = torch.from_numpy(masks & graph.valid[None]).float().transpose(1, 2)  # [rows, inputs, sources]
        shift = torch.from_numpy(graph.valid.T.astype(np.float32)) @ (self.base - runs.corrupted.writes).flatten(1)
        self.shift = shift.view(len(graph.inputs), *self.base.shape[1:])  # ablated − corrupted stream per input
        self.columns: dict[tuple[int, str], list[int]] = {}
        for column, item in enumerate(graph.inputs):
            self.columns.setdefault((item.layer, item.kind), []).append(column)
        self.difference = torch.empty(len(masks), len(graph.sources), self.base[0].numel())  # run − ablated write
        self.differenced = 0  # sources whose difference is filled (a run's writes never change once written)

    def _mixed(self, columns: list[int], stream: torch.Tensor, writes: torch.Tensor) -> torch.Tensor:
        """[rows, columns, t, d]: the ablated stream of each input plus its kept edges' differences."""
        n, done = writes.shape[1], self.differenced
        if n > done:
            self.difference[:, done:n] = (writes[:, done:n] - self.base[done:n][None]).flatten(2)
            self.differenced = n
        mixed = torch.bmm(self.keep[:, columns, :n], self.difference[:, :n])
        return stream + self.shift[columns] + mixed.view(writes.shape[0], len(columns), *stream.shape)

    def heads(self, layer: int, writes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k and v streams of the layer's heads."""
        order = [self.columns[layer, kind] for kind in ("q", "k", "v")]
        mixed = self._mixed(sum(order, []), self.corrupted.resid_pre[layer], writes)
        sizes = [len(columns) for columns in order]
        return tuple(mixed.split(sizes, dim=1))

    def mlp(self, layer: int, writes: torch.Tensor) -> torch.Tensor:
        """The MLP's stream."""
        stream = self.corrupted.resid_pre[layer] + (0 if self.graph.parallel_mlp else self.corrupted.attn_out[layer])
        return self._mixed(self.columns[layer, "mlp"], stream, writes)[:, 0]

    def final(self, writes: torch.Tensor) -> torch.Tensor:
        """The logits' stream."""
        return self._mixed(self.columns[self.graph.n_layers, "logits"], self.corrupted.resid_pre[-1], writes)[:, 0]


def first_ablated_layer(graph: CircuitGraph, masks: np.ndarray) -> int:
    """The lowest layer with an input that reads an ablated edge in any of ``masks`` [circuits, sources, inputs]
    (``graph.n_layers`` if only the logits do): below it every circuit run is the clean run."""
    ablated = (graph.valid[None] & ~masks).any(axis=(0, 1))
    layers = [graph.inputs[column].layer for column in np.flatnonzero(ablated)]
    return min(layers, default=graph.n_layers)


def _circuit_logits(handle: ModelHandle, runs: EdgeRuns, masks: np.ndarray, ablation: str) -> torch.Tensor:
    """Last-position logits [circuits, vocab] with each circuit's edges (rows of ``masks`` [circuits, sources,
    inputs]) kept and every other edge ablated, restarted at the first layer that reads an ablated edge."""
    return node_input_logits(handle, masks.shape[0], runs.clean, _CircuitStreams(runs, masks, ablation),
                             first_ablated_layer(runs.graph, masks))


def circuit_masks(graph: CircuitGraph, table: pd.DataFrame, edge_masks: Sequence[np.ndarray]) -> np.ndarray:
    """Circuits given as bool masks over the rows of an edge table, as [circuits, sources, inputs] matrices."""
    source_index = {name: index for index, name in enumerate(graph.sources)}
    input_index = {(item.target, item.input): index for index, item in enumerate(graph.inputs)}
    rows = np.array([source_index[name] for name in table["source"]], dtype=int)
    try:
        columns = np.array([input_index[key] for key in zip(table["target"], table["input"])], dtype=int)
    except KeyError as error:
        raise CircuitError(f"The edge {error.args[0]} is not an edge of this model.") from None
    matrices = np.zeros((len(edge_masks), *graph.valid.shape), dtype=bool)
    for index, mask in enumerate(edge_masks):
        matrices[index, rows[mask], columns[mask]] = True
    return matrices


def circuit_values(handle: ModelHandle, runs: EdgeRuns, table: pd.DataFrame, edge_masks: Sequence[np.ndarray],
                   ablation: str = "patch") -> np.ndarray:
    """The normalised metric (1 = clean, 0 = corrupted) of each circuit (a bool mask over ``table``'s rows)."""
    return kept_edge_values(handle, runs, len(edge_masks), lambda first, last: circuit_masks(
        runs.graph, table, edge_masks[first:last]), ablation)


def kept_edge_values(handle: ModelHandle, runs: EdgeRuns, n_rows: int,
                     matrices: Callable[[int, int], np.ndarray], ablation: str = "patch") -> np.ndarray:
    """The normalised metric of ``n_rows`` runs, each keeping the edges of its [sources, inputs] bool matrix
    (``matrices(first, last)`` gives rows first…last−1) and ablating every other edge."""
    values = []
    for first in range(0, n_rows, ROWS_PER_CALL):
        chunk = matrices(first, min(first + ROWS_PER_CALL, n_rows))
        values.append(runs.values(_circuit_logits(handle, runs, chunk, ablation)).cpu().numpy())
    return runs.baseline.normalise(np.concatenate(values).astype(np.float64)) if values else np.zeros(0)


def evaluate_circuit(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                     metric: PatchingMetric, edges: pd.DataFrame, ablation: str = "patch") -> float:
    """The normalised metric (1 = clean, 0 = corrupted) with only ``edges`` (rows with source, target, input)
    kept and every other edge of the graph ablated ("patch": from the corrupted run, or "mean")."""
    runs = prepare_edge_runs(handle, clean_ids, corrupted_ids, metric)
    return float(circuit_values(handle, runs, edges, [np.ones(len(edges), dtype=bool)], ablation)[0])


def curve_sizes(n_edges: int, sizes: Sequence[int] = CURVE_SIZES) -> list[int]:
    """The circuit sizes of a faithfulness curve for a graph of ``n_edges`` edges (ending with all of them)."""
    return [size for size in sizes if size < n_edges] + [n_edges]


def faithfulness_curve(handle: ModelHandle, runs: EdgeRuns, tables: dict[str, pd.DataFrame],
                       sizes: Sequence[int] | None = None, ablation: str = "patch") -> pd.DataFrame:
    """Faithfulness of the pruned top-n circuit of each method's score table, for each n in ``sizes``.

    Columns: method, n_edges (asked for), kept (edges left after pruning), faithfulness.
    """
    rows = []
    for method, table in tables.items():
        chosen = sizes or curve_sizes(len(table))
        masks = [prune(runs.graph, _table_mask(runs.graph, table, size)) for size in chosen]
        values = circuit_values(handle, runs, table, masks, ablation)
        rows += [(method, size, int(mask.sum()), value) for size, mask, value in zip(chosen, masks, values)]
    return pd.DataFrame(rows, columns=["method", "n_edges", "kept", "faithfulness"])


def _table_mask(graph: CircuitGraph, table: pd.DataFrame, size: int) -> np.ndarray:
    """The top-``size`` rows of a score table, as a mask in the graph's own edge order."""
    if len(table) != graph.n_edges:
        raise CircuitError("A faithfulness curve needs a score for every edge of the graph.")
    return top_n(table["score"].to_numpy(), size)


def curve_auc(n_edges: np.ndarray, faithfulness: np.ndarray) -> float:
    """Area under faithfulness over log10(edges), divided by the log range (the mean faithfulness on the curve)."""
    x = np.log10(np.asarray(n_edges, dtype=np.float64))
    if len(x) < 2 or x[-1] == x[0]:
        return float(faithfulness[0]) if len(faithfulness) else float("nan")
    y = np.asarray(faithfulness, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))
