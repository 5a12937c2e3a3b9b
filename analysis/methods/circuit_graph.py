"""The computational graph of a transformer as circuit methods see it, and circuits as subsets of its edges.

Nodes (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"; Conmy et al. 2023, ACDC;
Hanna et al. 2024, EAP-IG): ``input`` (the embeddings), every attention head ``L{l}H{h}`` (its write to the
residual stream), every MLP ``MLP{l}``, and ``logits``. The residual stream entering a node is the sum of the
writes of every node upstream of it, so an *edge* u → d is one upstream write as one downstream input reads it.
A head reads the stream three times — as its query, key and value (Q-, K- and V-composition) — so each head has
three inputs; under grouped-query attention the key and value are computed once per KV group, so the k and v
inputs belong to the group (named ``L{l}KV{g}``), not to one query head. A layer's MLP reads the stream after
that layer's heads, except in parallel-residual families (GPT-NeoX, GPT-J), whose MLP reads the layer's input,
so heads of the same layer do not feed it.

Scores live in a matrix [sources, inputs] with a mask of real edges; the edge table (one row per edge:
``source``, ``target``, ``input`` (q, k, v or empty), ``score``) is the form the page, the CLI and the downloads
share. A circuit is a boolean mask over the edge table's rows: chosen by the top n |scores|, a threshold, or
greedily from the logits up (EAP-IG's ``apply_greedy``), then pruned to the nodes that lie on a path from the
input to the logits.
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from analysis.heads import head_label

INPUT_KINDS = ("q", "k", "v")
SELECTIONS: dict[str, str] = {"top_n": "top n edges by |score|", "threshold": "|score| at least a threshold",
                              "greedy": "greedy from the logits up"}


PAGE_SELECTIONS = {name: SELECTIONS[name] for name in ("top_n", "greedy")}  # chosen by a number of edges


class CircuitError(ValueError):
    """A circuit cannot be chosen or evaluated as asked (bad size, unknown selection, unknown edge)."""


@dataclass(frozen=True)
class NodeInput:
    """One place a downstream node reads the residual stream: its name, layer, kind and the heads it feeds."""

    target: str  # L{l}H{h}, L{l}KV{g} (k/v of a KV group under GQA), MLP{l} or logits
    layer: int  # n_layers for the logits
    kind: str  # "q", "k", "v", "mlp" or "logits"
    heads: tuple[int, ...] = ()  # the query heads whose output this input feeds (heads only)

    @property
    def input(self) -> str:
        """The edge table's ``input`` column: q, k, v, or empty for MLPs and the logits."""
        return self.kind if self.kind in INPUT_KINDS else ""


@dataclass(frozen=True)
class CircuitGraph:
    """The nodes and edges of one model (plain sizes only, so it is cheap to build and to hash)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    parallel_mlp: bool = False  # the MLP reads the layer's input (GPT-NeoX): same-layer heads do not feed it
    d_model: int = 0

    @property
    def group_size(self) -> int:
        """Query heads per KV group (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    @cached_property
    def sources(self) -> tuple[str, ...]:
        """Upstream nodes in forward order: input, then per layer its heads and its MLP."""
        names = ["input"]
        for layer in range(self.n_layers):
            names += [head_label(layer, head) for head in range(self.n_heads)] + [f"MLP{layer}"]
        return tuple(names)

    @cached_property
    def source_layers(self) -> np.ndarray:
        """The layer of each source (-1 for the input)."""
        return np.array([-1] + [layer for layer in range(self.n_layers) for _ in range(self.n_heads + 1)])

    @cached_property
    def source_heads(self) -> np.ndarray:
        """The head index of each source (-1 for the input and the MLPs)."""
        return np.array([-1] + [head for _ in range(self.n_layers) for head in [*range(self.n_heads), -1]])

    def head_source(self, layer: int, head: int) -> int:
        """Index of head (layer, head) among the sources."""
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_source(self, layer: int) -> int:
        """Index of MLP ``layer`` among the sources."""
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    @cached_property
    def inputs(self) -> tuple[NodeInput, ...]:
        """Downstream inputs in forward order: per layer the heads' q, then k and v (per KV group), the MLP; logits."""
        items: list[NodeInput] = []
        size = self.group_size
        for layer in range(self.n_layers):
            items += [NodeInput(head_label(layer, head), layer, "q", (head,)) for head in range(self.n_heads)]
            for kind in ("k", "v"):
                for group in range(self.n_kv_heads):
                    heads = tuple(range(group * size, (group + 1) * size))
                    name = head_label(layer, heads[0]) if size == 1 else f"L{layer}KV{group}"
                    items.append(NodeInput(name, layer, kind, heads))
            items.append(NodeInput(f"MLP{layer}", layer, "mlp"))
        items.append(NodeInput("logits", self.n_layers, "logits"))
        return tuple(items)

    @cached_property
    def valid(self) -> np.ndarray:
        """[sources, inputs] bool: True where the source is upstream of the input (a real edge)."""
        layers = self.source_layers
        is_head = np.array([name.startswith("L") for name in self.sources])
        columns = []
        for item in self.inputs:
            upstream = layers < item.layer
            if item.kind == "mlp" and not self.parallel_mlp:
                upstream = upstream | ((layers == item.layer) & is_head)
            columns.append(upstream)
        return np.stack(columns, axis=1)

    @cached_property
    def edge_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(source index, input index) of every real edge, in forward order of the inputs."""
        inputs, sources = np.nonzero(self.valid.T)
        return sources, inputs

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return len(self.edge_index[0])

    @cached_property
    def input_nodes(self) -> tuple[tuple[int, ...], ...]:
        """For each input, the source nodes whose output it feeds (its heads, its MLP; none for the logits)."""
        nodes = []
        for item in self.inputs:
            if item.kind in INPUT_KINDS:
                nodes.append(tuple(self.head_source(item.layer, head) for head in item.heads))
            elif item.kind == "mlp":
                nodes.append((self.mlp_source(item.layer),))
            else:
                nodes.append(())
        return tuple(nodes)

    def edge_names(self) -> pd.DataFrame:
        """One row per edge in the graph's order (row i is edge i): source, target, input."""
        sources, inputs = self.edge_index
        targets = np.array([item.target for item in self.inputs])
        kinds = np.array([item.input for item in self.inputs])
        return pd.DataFrame({"source": np.array(self.sources)[sources], "target": targets[inputs],
                             "input": kinds[inputs]})

    def edge_table(self, scores: np.ndarray) -> pd.DataFrame:
        """One row per edge from a score matrix [sources, inputs]: source, target, input, score."""
        sources, inputs = self.edge_index
        return self.edge_names().assign(score=np.asarray(scores, dtype=np.float64)[sources, inputs])

    def edge_mask_matrix(self, mask: np.ndarray) -> np.ndarray:
        """A circuit (bool per edge-table row) as a [sources, inputs] bool matrix."""
        matrix = np.zeros(self.valid.shape, dtype=bool)
        sources, inputs = self.edge_index
        matrix[sources[mask], inputs[mask]] = True
        return matrix


def graph_of(info, parallel_mlp: bool = False) -> CircuitGraph:
    """The graph of a model from its ``ModelInfo``."""
    return CircuitGraph(info.n_layers, info.n_heads, info.n_kv_heads, parallel_mlp, info.d_model)


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` edges with the largest |score| (bool per edge)."""
    if n < 0:
        raise CircuitError(f"A circuit has zero or more edges (asked for {n}).")
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-np.abs(scores), kind="stable")[:n]] = True
    return mask


def above_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Edges whose |score| is at least ``threshold``."""
    return np.abs(scores) >= threshold


def greedy(graph: CircuitGraph, scores: np.ndarray, n: int) -> np.ndarray:
    """``n`` edges chosen from the logits up (EAP-IG's greedy search): the candidates start as the edges into the
    logits; the best candidate by |score| joins, and if its source is new to the circuit, the edges into that
    source's inputs become candidates too. Every chosen edge then lies on a path to the logits."""
    sources, inputs = graph.edge_index
    if not 0 <= n <= len(scores):
        raise CircuitError(f"Pick between 0 and {len(scores):,} edges (asked for {n:,}).")
    into = [[] for _ in graph.sources]  # source node -> edges into any of its inputs
    for edge, column in enumerate(inputs):
        for node in graph.input_nodes[column]:
            into[node].append(edge)
    logits_column = len(graph.inputs) - 1
    heap = [(-abs(scores[edge]), edge) for edge in np.nonzero(inputs == logits_column)[0]]
    heapq.heapify(heap)
    mask = np.zeros(len(scores), dtype=bool)
    joined = np.zeros(len(graph.sources), dtype=bool)
    while heap and mask.sum() < n:
        _, edge = heapq.heappop(heap)
        if mask[edge]:
            continue
        mask[edge] = True
        source = sources[edge]
        if not joined[source]:
            joined[source] = True
            for candidate in into[source]:
                heapq.heappush(heap, (-abs(scores[candidate]), candidate))
    return mask


def select(graph: CircuitGraph, scores: np.ndarray, how: str, value: float) -> np.ndarray:
    """A circuit by ``how`` in SELECTIONS (n edges for top_n and greedy, a threshold otherwise), pruned."""
    if how == "top_n":
        mask = top_n(scores, int(value))
    elif how == "threshold":
        mask = above_threshold(scores, value)
    elif how == "greedy":
        mask = greedy(graph, scores, int(value))
    else:
        raise CircuitError(f"Unknown selection '{how}'; use one of {', '.join(SELECTIONS)}.")
    return prune(graph, mask)


def _alive_nodes(graph: CircuitGraph, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reached from the input, reaching the logits) per source node, through the circuit's edges."""
    sources, inputs = graph.edge_index
    order = np.argsort(inputs, kind="stable")  # edges in forward order of their inputs
    reached = np.zeros(len(graph.sources), dtype=bool)
    reached[0] = True
    for edge in order:  # an input's sources all come before its nodes, so one forward sweep suffices
        if mask[edge] and reached[sources[edge]]:
            reached[list(graph.input_nodes[inputs[edge]])] = True
    reaching = np.zeros(len(graph.sources), dtype=bool)
    logits_column = len(graph.inputs) - 1
    for edge in order[::-1]:
        column = inputs[edge]
        if mask[edge] and (column == logits_column or reaching[list(graph.input_nodes[column])].any()):
            reaching[sources[edge]] = True
    return reached, reaching


def prune(graph: CircuitGraph, mask: np.ndarray) -> np.ndarray:
    """Keep only the edges on a path from the input to the logits inside the circuit."""
    sources, inputs = graph.edge_index
    reached, reaching = _alive_nodes(graph, mask)
    alive = reached & reaching
    logits_column = len(graph.inputs) - 1
    target_alive = np.array([column == logits_column or bool(alive[list(graph.input_nodes[column])].any())
                             for column in range(len(graph.inputs))])
    return mask & alive[sources] & target_alive[inputs]


def circuit_nodes(graph: CircuitGraph, mask: np.ndarray) -> list[str]:
    """The nodes of a (pruned) circuit in forward order, the logits last when any edge is kept."""
    sources, inputs = graph.edge_index
    used = np.zeros(len(graph.sources), dtype=bool)
    used[sources[mask]] = True
    for column in inputs[mask]:
        used[list(graph.input_nodes[column])] = True
    names = [name for name, keep in zip(graph.sources, used) if keep]
    return names + (["logits"] if mask.any() else [])


def circuit_heads(graph: CircuitGraph, mask: np.ndarray) -> list[tuple[int, int]]:
    """The (layer, head) pairs among a circuit's nodes."""
    heads = []
    for name in circuit_nodes(graph, mask):
        if name.startswith("L"):
            layer, head = name[1:].split("H")
            heads.append((int(layer), int(head)))
    return heads


def _eap_ig_name(name: str) -> str:
    """An Atlas node name in EAP-IG's spelling: L3H2 → a3.h2, MLP3 → m3."""
    if name.startswith("MLP"):
        return f"m{name[3:]}"
    if name.startswith("L"):
        layer, head = name[1:].split("H")
        return f"a{layer}.h{head}"
    return name


def circuit_json(graph: CircuitGraph, table: pd.DataFrame, mask: np.ndarray, meta: dict | None = None,
                 all_edges: bool = False) -> str:
    """The graph and a circuit in EAP-IG's JSON layout (``Graph.from_json`` reads it).

    ``table`` is a score table in the graph's edge order and ``mask`` the circuit. ``cfg`` (n_layers, n_heads,
    parallel_attn_mlp, d_model, plus n_kv_heads), ``nodes`` {name: {in_graph}} and ``edges`` {"parent->child<q>":
    {score, in_graph}} with EAP-IG's names (``a{l}.h{h}``, ``m{l}``, ``input``, ``logits``): the circuit's edges,
    or every edge with ``all_edges`` (EAP-IG leaves edges it is not given out of the graph). Under grouped-query
    attention a k or v edge into a KV group is written once per query head of the group, with the group's score.
    Each edge also carries the Atlas names (``source``, ``target``, ``input``); ``meta`` (model, prompts, metric,
    method) sits under ``atlas``.
    """
    nodes = set(circuit_nodes(graph, mask))
    cfg = {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "n_kv_heads": graph.n_kv_heads,
           "parallel_attn_mlp": graph.parallel_mlp, "d_model": graph.d_model}
    node_dict = {_eap_ig_name(name): {"in_graph": name in nodes} for name in (*graph.sources, "logits")}
    edges = {}
    _, inputs = graph.edge_index
    sources, targets, kinds, scores = (table[column].to_numpy() for column in ("source", "target", "input", "score"))
    for index in (range(len(table)) if all_edges else np.flatnonzero(mask)):
        item = graph.inputs[inputs[index]]
        children = ([_eap_ig_name(head_label(item.layer, head)) for head in item.heads] if item.heads
                    else [_eap_ig_name(item.target)])
        for child in children:
            name = f"{_eap_ig_name(sources[index])}->{child}" + (f"<{kinds[index]}>" if kinds[index] else "")
            edges[name] = {"score": float(scores[index]), "in_graph": bool(mask[index]), "source": sources[index],
                           "target": targets[index], "input": kinds[index]}
    return json.dumps({"cfg": cfg, "nodes": node_dict, "edges": edges, "atlas": meta or {}})
