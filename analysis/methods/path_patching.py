"""Path patching (Wang et al. 2022, "Interpretability in the Wild"): a sender's effect through chosen receivers.

The sender's corrupted write reaches only the receivers' inputs — a head's query, key or value, an MLP, the
logits — while every other path from the sender carries its clean write, and everything downstream of the
receivers is recomputed. On the circuit graph (``analysis.methods.circuit_graph``) that is the clean run with
only the edges sender → receiver ablated (patched from the corrupted prompt) and every other edge kept, so it is
evaluated by the same per-input streams as faithfulness (``analysis.methods.faithfulness``). With one receiver
input it is the exact patch of that one edge.

Values are normalised like patching (1 = the clean run, 0 = the corrupted run); a path's ``effect`` is the
value − 1: the share of the clean − corrupted gap lost when the corrupted sender reaches the receivers (about
−1: the path carries all of it; positive: the path works against the behaviour). IOI example: the receivers are
the name movers' queries, and the S-inhibition heads are the senders with large negative effects.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.heads import HeadSpecError, parse_heads
from analysis.methods.circuit_graph import INPUT_KINDS, CircuitError, CircuitGraph
from analysis.methods.edge_attribution import EdgeRuns
from analysis.methods.faithfulness import kept_edge_values
from analysis.runtime.handle import ModelHandle

PATH_INPUTS = {"q": "query", "k": "key", "v": "value", "qk": "query and key", "qv": "query and value",
               "kv": "key and value", "qkv": "query, key and value"}  # which inputs of the receiver heads


def receiver_inputs(graph: CircuitGraph, receivers: str, kinds: Sequence[str] = ("q",)) -> list[int]:
    """Columns of ``graph.inputs`` read by ``receivers`` ("L23H3, L20H*, MLP29, logits"): each head's ``kinds``
    among q, k, v (its KV group's k and v under grouped-query attention), an MLP's or the logits' one input.
    Raises CircuitError for an unknown receiver or kind, or none."""
    unknown = sorted(set(kinds) - set(INPUT_KINDS))
    if unknown:
        raise CircuitError(f"Unknown input kind {', '.join(unknown)}: a head reads its q, k and v.")
    columns: list[int] = []
    for part in re.split(r"[,\s;]+", receivers or ""):
        columns += [column for column in _receiver_columns(graph, part, kinds) if column not in columns]
    if not columns:
        raise CircuitError("Pick at least one receiver: a head's q, k or v (L23H3), an MLP (MLP29) or the logits.")
    return columns


def _receiver_columns(graph: CircuitGraph, part: str, kinds: Sequence[str]) -> list[int]:
    if not part:
        return []
    if part == "logits" or (part.startswith("MLP") and part[3:].isdigit()):
        found = [index for index, item in enumerate(graph.inputs) if item.target == part]
        if not found:
            raise CircuitError(f"{part}: layer {part[3:]} does not exist (layers 0–{graph.n_layers - 1}).")
        return found
    try:
        heads = parse_heads(part, graph.n_layers, graph.n_heads)
    except HeadSpecError as error:
        raise CircuitError(f"{error} Receivers may also be MLP{{layer}} or logits.") from None
    return [index for index, item in enumerate(graph.inputs) for layer, head in heads
            if item.layer == layer and item.kind in kinds and head in item.heads]


def path_patching(handle: ModelHandle, runs: EdgeRuns, receivers: Sequence[int],
                  senders: Sequence[str] | None = None) -> pd.DataFrame:
    """Each sender's path effect through the receiver inputs (columns of ``runs.graph.inputs``).

    ``senders``: source node names (default: every node with an edge into a receiver). One row per sender with
    ``sender``, ``layer`` (-1 for the input), ``head`` (-1 unless a head), ``value`` (normalised metric) and
    ``effect`` (value − 1), in the graph's source order.
    """
    graph = runs.graph
    columns = np.asarray(receivers, dtype=int)
    index = {name: position for position, name in enumerate(graph.sources)}
    if senders is None:
        rows = np.flatnonzero(graph.valid[:, columns].any(axis=1))
    else:
        missing = [name for name in senders if name not in index]
        if missing:
            raise CircuitError(f"Unknown sender {missing[0]}; senders are input, L{{l}}H{{h}} or MLP{{l}}.")
        rows = np.array([index[name] for name in senders], dtype=int)
    if not len(rows) or not graph.valid[np.ix_(rows, columns)].any():
        raise CircuitError("No sender is upstream of these receivers (a receiver reads only lower layers).")

    def matrices(first: int, last: int) -> np.ndarray:
        kept = np.repeat(graph.valid[None], last - first, axis=0)
        for offset, row in enumerate(rows[first:last]):
            kept[offset, row, columns] = False
        return kept

    values = kept_edge_values(handle, runs, len(rows), matrices)
    return pd.DataFrame({"sender": [graph.sources[row] for row in rows], "layer": graph.source_layers[rows],
                         "head": graph.source_heads[rows], "value": values, "effect": values - 1.0})
