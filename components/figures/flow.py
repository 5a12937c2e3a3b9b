"""Plotly figures for attention rollout: the per-token contribution strip and the layered flow graph.

The graph puts tokens across and layers upwards (bottom row: the input tokens, top row: the output).
Attention edges are grouped into a few width classes (by the square root of their weight relative to the
strongest, so weak edges stay visible), each drawn as one line trace with gaps, so thousands of edges
(30 layers × 40 tokens) stay fast to draw. Residual edges (a token to itself) are thin and grey: their
weight is at least 0.5 everywhere, so they would otherwise hide the attention. Nodes carry the hover text.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

ATTENTION_COLOR = "rgba(31, 119, 180, {alpha:.2f})"
RESIDUAL_COLOR = "rgba(150, 150, 150, {alpha:.2f})"
OUTPUT_COLOR = "crimson"
WIDTH_CLASSES = (0.5, 1.5, 3.0, 5.0, 8.0)
FULL_GRID_TOKENS = 256  # longer texts draw only the streams an edge touches


def contribution_strip(shares: np.ndarray, tokens: list[str], position: int, title: str) -> go.Figure:
    """Bars over the text: each input token's share in the output token (which is marked)."""
    labels = [f"{token} ({index})" for index, token in enumerate(tokens)]
    colors = [OUTPUT_COLOR if index == position else "#1f77b4" for index in range(len(tokens))]
    figure = go.Figure(go.Bar(x=list(range(len(tokens))), y=shares, marker_color=colors, customdata=labels,
                              hovertemplate="%{customdata}<br>share %{y:.4f}<extra></extra>"))
    step = max(1, len(tokens) // 60)
    figure.update_xaxes(tickvals=list(range(0, len(tokens), step)), ticktext=tokens[::step], tickangle=-60)
    figure.update_layout(title={"text": title, "font": {"size": 14}}, height=300, yaxis_title="share",
                         margin={"l": 10, "r": 10, "t": 40, "b": 10}, bargap=0.15)
    return figure


def _edge_trace(edges: pd.DataFrame, width: float, color: str, name: str) -> go.Scatter:
    xs = np.column_stack([edges["source"], edges["target"], np.full(len(edges), np.nan)]).ravel()
    ys = np.column_stack([edges["layer"], edges["layer"] + 1, np.full(len(edges), np.nan)]).ravel()
    return go.Scatter(x=xs, y=ys, mode="lines", line={"width": width, "color": color}, hoverinfo="skip",
                      showlegend=False, name=name)


def _nodes(edges: pd.DataFrame, n_layers: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(layer, token) of the nodes drawn: every stream of a short text; of a long one only the streams an
    edge touches, so the figure stays small at thousands of tokens."""
    if n_tokens <= FULL_GRID_TOKENS:
        layers, positions = np.meshgrid(np.arange(n_layers + 1), np.arange(n_tokens), indexing="ij")
        return layers.ravel(), positions.ravel()
    ends = pd.concat([pd.DataFrame({"layer": edges["layer"], "token": edges["source"]}),
                      pd.DataFrame({"layer": edges["layer"] + 1, "token": edges["target"]})]).drop_duplicates()
    return ends["layer"].to_numpy(), ends["token"].to_numpy()


def flow_graph(edges: pd.DataFrame, tokens: list[str], n_layers: int, position: int | None,
               masses: np.ndarray | None = None) -> go.Figure:
    """The layered graph: node (token j, layer l) is j's stream entering layer l; row ``n_layers`` is the output.

    ``edges`` come from ``analysis.methods.rollout.flow_edges``; ``masses`` [layers + 1, tokens] sizes the nodes
    by the output token's share held there (if given).
    """
    n_tokens = len(tokens)
    figure = go.Figure()
    residual = edges[edges["residual"]]
    if len(residual):
        figure.add_trace(_edge_trace(residual, 1.5, RESIDUAL_COLOR.format(alpha=0.45), "residual"))
    attention = edges[~edges["residual"]]
    top = float(attention["weight"].max()) if len(attention) else 1.0
    bins = np.minimum((np.sqrt(attention["weight"].to_numpy() / top) * len(WIDTH_CLASSES)).astype(int),
                      len(WIDTH_CLASSES) - 1)
    for index, width in enumerate(WIDTH_CLASSES):
        chosen = attention[bins == index]
        if len(chosen):
            alpha = 0.35 + 0.65 * (index + 1) / len(WIDTH_CLASSES)
            figure.add_trace(_edge_trace(chosen, width, ATTENTION_COLOR.format(alpha=alpha), "attention"))
    layers, positions = _nodes(edges, n_layers, n_tokens)
    share = masses if masses is not None else np.zeros((n_layers + 1, n_tokens))
    hover = [f"{'output' if layer == n_layers else f'L{layer} input'} · {tokens[token]} ({token})"
             + (f"<br>share {share[layer, token]:.3f}" if masses is not None else "")
             for layer, token in zip(layers, positions)]
    figure.add_trace(go.Scatter(
        x=positions, y=layers, mode="markers", text=hover, hovertemplate="%{text}<extra></extra>",
        marker={"size": 3 + 12 * np.sqrt(share[layers, positions]), "color": "#34495e"}, showlegend=False,
        name="streams",
    ))
    if position is not None:
        figure.add_trace(go.Scatter(x=[position], y=[n_layers], mode="markers", hoverinfo="skip", showlegend=False,
                                    marker={"size": 14, "color": OUTPUT_COLOR, "symbol": "diamond"}))
    step = max(1, n_tokens // 60)
    figure.update_xaxes(tickvals=list(range(0, n_tokens, step)), ticktext=tokens[::step], tickangle=-60,
                        showgrid=False, zeroline=False, range=[-0.7, n_tokens - 0.3])
    layer_step = 1 if n_layers <= 32 else 2
    figure.update_yaxes(tickvals=list(range(0, n_layers + 1, layer_step)),
                        ticktext=[f"L{l}" if l < n_layers else "out" for l in range(0, n_layers + 1, layer_step)],
                        showgrid=False, zeroline=False, range=[-0.6, n_layers + 0.6])
    figure.update_layout(height=max(420, 24 * (n_layers + 1) + 140), plot_bgcolor="white", dragmode=False,
                         margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure
