"""Figures of weight-based circuits: one kind of composition into a head as a layer × head grid, and the
strongest composition pairs of the whole model as a layered graph (layers upwards, heads across)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.heads import heads_frame
from components.figures.grids import importance_grid


def composition_grid(table: pd.DataFrame, n_layers: int, n_heads: int, target: str, kind: str) -> go.Figure:
    """Each earlier head's ``kind``-composition score into ``target`` (later heads blank)."""
    values = np.full((n_layers, n_heads), np.nan)
    into = table[table["target"] == target]
    values[into["source_layer"].to_numpy(), into["source_head"].to_numpy()] = into["score"].to_numpy()
    frame = heads_frame(n_layers, n_heads, score=values)
    baseline = float(table["baseline"].iloc[0]) if len(table) else float("nan")
    return importance_grid(frame, "score", f"{kind}-composition into {target} (random baseline {baseline:.3f})",
                           signed=False, colorbar_title="score")


def composition_graph(pairs: pd.DataFrame, n_layers: int, n_heads: int, title: str) -> go.Figure:
    """Heads as nodes at (head, layer), the given pairs as edges whose width and opacity follow the score."""
    figure = go.Figure()
    if len(pairs):
        low, high = float(pairs["score"].min()), float(pairs["score"].max())
        for row in pairs.itertuples():
            strength = (row.score - low) / (high - low) if high > low else 1.0
            figure.add_trace(go.Scatter(
                x=[row.source_head, row.target_head], y=[row.source_layer, row.target_layer], mode="lines",
                line={"width": 1 + 4 * strength, "color": f"rgba(214, 51, 108, {0.25 + 0.75 * strength:.2f})"},
                hoverinfo="text", text=f"{row.source} → {row.target} ({row.kind}): {row.score:.3f}", showlegend=False))
    used = set(zip(pairs["source_layer"], pairs["source_head"])) | set(zip(pairs["target_layer"], pairs["target_head"]))
    nodes = sorted(used)
    figure.add_trace(go.Scatter(
        x=[h for _, h in nodes], y=[l for l, _ in nodes], mode="markers+text", text=[f"L{l}H{h}" for l, h in nodes],
        textposition="middle right", textfont={"size": 9}, marker={"size": 9, "color": "#343a40"},
        hoverinfo="text", showlegend=False))
    figure.update_layout(title={"text": title, "font": {"size": 14}}, height=max(360, 22 * n_layers),
                         margin={"l": 40, "r": 10, "t": 40, "b": 30}, plot_bgcolor="white")
    figure.update_xaxes(title="head", range=[-0.5, n_heads + 0.5], dtick=1, showgrid=False)
    figure.update_yaxes(title="layer", range=[-0.5, n_layers - 0.5], dtick=max(1, n_layers // 15), showgrid=False)
    return figure
