"""Plotly figures for circuits: the layered circuit graph and the faithfulness curve.

The graph puts layers upwards (the input at the bottom, the logits on top), each head at its layer with the
layer's MLP on the right, half a layer above the heads it reads (beside them in parallel-residual families).
Edges are grouped by input kind (q, k, v, MLP, logits), sign and one of a few width classes (by |score|
relative to the strongest); each group is one line trace with gaps, so a few hundred edges over 30 layers
stay quick to draw. Colour says the kind, a dashed line a negative score. Each edge's hover (source →
target, input, score) sits on a small marker at its middle; nodes carry their own hover and name, so a click
on a node can open its head view.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.methods.circuit_graph import CircuitGraph
from analysis.methods.faithfulness import curve_auc

KIND_COLORS = {"q": "#1f77b4", "k": "#2ca02c", "v": "#ff7f0e", "mlp": "#9467bd", "logits": "#d62728"}
KIND_NAMES = {"q": "query", "k": "key", "v": "value", "mlp": "MLP input", "logits": "logits"}
WIDTH_CLASSES = (0.8, 1.8, 3.2, 5.5)
NODE_COLORS = {"input": "#34495e", "head": "#1f77b4", "mlp": "#9467bd", "logits": "#d62728"}


def _node_positions(graph: CircuitGraph) -> dict[str, tuple[float, float]]:
    """(x, y) of every node and KV-group input: heads at x = head, the MLP at x = n_heads."""
    centre = (graph.n_heads - 1) / 2
    positions = {"input": (centre, -1.0), "logits": (centre, float(graph.n_layers))}
    mlp_offset = 0.0 if graph.parallel_mlp else 0.45
    for item in graph.inputs:
        if item.kind in ("q", "k", "v"):
            positions.setdefault(item.target, (float(np.mean(item.heads)) if len(item.heads) > 1
                                               else float(item.heads[0]), float(item.layer)))
        elif item.kind == "mlp":
            positions[item.target] = (float(graph.n_heads), item.layer + mlp_offset)
    return positions


def _kind(row_input: str, target: str) -> str:
    return row_input if row_input else ("logits" if target == "logits" else "mlp")


def circuit_figure(graph: CircuitGraph, edges: pd.DataFrame, title: str = "") -> go.Figure:
    """The circuit's edges (rows of the edge table: source, target, input, score) as a layered graph."""
    positions = _node_positions(graph)
    figure = go.Figure()
    top = float(edges["score"].abs().max()) if len(edges) else 1.0
    top = top or 1.0
    kinds = np.array([_kind(row_input, target) for row_input, target in zip(edges["input"], edges["target"])])
    scores = edges["score"].to_numpy()
    bins = np.minimum((np.abs(scores) / top * len(WIDTH_CLASSES)).astype(int), len(WIDTH_CLASSES) - 1)
    start = np.array([positions[name] for name in edges["source"]]).reshape(-1, 2)
    # a query edge ends a little below its head, k and v beside it, so the three kinds stay apart
    nudge = {"q": (0.0, -0.12), "k": (-0.18, -0.08), "v": (0.18, -0.08), "mlp": (0.0, -0.1), "logits": (0.0, -0.1)}
    end = np.array([np.add(positions[name], nudge[kind]) for name, kind in zip(edges["target"], kinds)]
                   ).reshape(-1, 2)
    for kind, color in KIND_COLORS.items():
        shown = False
        for negative in (False, True):
            for index, width in enumerate(WIDTH_CLASSES):
                chosen = (kinds == kind) & ((scores < 0) == negative) & (bins == index)
                if not chosen.any():
                    continue
                gap = np.full(chosen.sum(), np.nan)
                figure.add_trace(go.Scatter(
                    x=np.column_stack([start[chosen, 0], end[chosen, 0], gap]).ravel(),
                    y=np.column_stack([start[chosen, 1], end[chosen, 1], gap]).ravel(), mode="lines",
                    line={"width": width, "color": color, "dash": "dot" if negative else "solid"},
                    opacity=0.45 + 0.55 * (index + 1) / len(WIDTH_CLASSES), hoverinfo="skip",
                    name=KIND_NAMES[kind], legendgroup=kind, showlegend=not shown))
                shown = True
    if len(edges):
        hover = [f"{source} → {target}" + (f" ({row_input})" if row_input else "") + f"<br>score {score:+.4g}"
                 for source, target, row_input, score in zip(edges["source"], edges["target"], edges["input"],
                                                             scores)]
        middle = (start + end) / 2
        figure.add_trace(go.Scatter(x=middle[:, 0], y=middle[:, 1], mode="markers", text=hover,
                                    hovertemplate="%{text}<extra></extra>", showlegend=False, name="edges",
                                    marker={"size": 5, "color": [KIND_COLORS[kind] for kind in kinds],
                                            "opacity": 0.6}))
    names = sorted({*edges["source"], *edges["target"]} - {name for name in positions if "KV" in name},
                   key=lambda name: positions[name][1])
    names = [name for name in names if name in positions]
    node_kind = ["input" if name == "input" else "logits" if name == "logits" else
                 "mlp" if name.startswith("MLP") else "head" for name in names]
    figure.add_trace(go.Scatter(
        x=[positions[name][0] for name in names], y=[positions[name][1] for name in names],
        mode="markers+text", text=names, textposition="middle right", customdata=names,
        hovertemplate="%{customdata}<extra>click: head view</extra>", showlegend=False, name="nodes",
        marker={"size": 11, "color": [NODE_COLORS[kind] for kind in node_kind], "line": {"width": 1,
                                                                                        "color": "white"}}))
    layer_step = 1 if graph.n_layers <= 32 else 2
    figure.update_yaxes(tickvals=[-1, *range(0, graph.n_layers, layer_step), graph.n_layers],
                        ticktext=["input", *[f"L{layer}" for layer in range(0, graph.n_layers, layer_step)],
                                  "logits"], showgrid=False, zeroline=False,
                        range=[-1.6, graph.n_layers + 0.6])
    figure.update_xaxes(tickvals=[*range(graph.n_heads), graph.n_heads],
                        ticktext=[*[f"H{head}" for head in range(graph.n_heads)], "MLP"], showgrid=False,
                        zeroline=False, range=[-0.8, graph.n_heads + 1.2])
    figure.update_layout(title={"text": title, "font": {"size": 14}}, plot_bgcolor="white",
                         height=max(480, 26 * (graph.n_layers + 2) + 120), clickmode="event",
                         legend={"orientation": "h", "y": 1.02, "x": 0},
                         margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return figure


def faithfulness_figure(curves: pd.DataFrame) -> go.Figure:
    """Faithfulness (normalised metric, 1 = clean) against circuit size, one line per method with its AUC.

    ``curves``: method, n_edges, faithfulness (from ``analysis.methods.faithfulness.faithfulness_curve``).
    """
    figure = go.Figure()
    for method, curve in curves.groupby("method", sort=False):
        auc = curve_auc(curve["n_edges"].to_numpy(), curve["faithfulness"].to_numpy())
        figure.add_trace(go.Scatter(x=curve["n_edges"], y=curve["faithfulness"], mode="lines+markers",
                                    name=f"{method} (AUC {auc:.2f})",
                                    hovertemplate="%{x} edges<br>faithfulness %{y:.3f}<extra></extra>"))
    figure.add_hline(y=1.0, line={"dash": "dot", "color": "grey"}, annotation_text="clean")
    figure.add_hline(y=0.0, line={"dash": "dot", "color": "grey"}, annotation_text="corrupted")
    figure.update_xaxes(type="log", title="edges in the circuit")
    figure.update_yaxes(title="faithfulness (normalised metric)")
    figure.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                         legend={"orientation": "h", "y": 1.1})
    return figure
