"""Plotly figures for comparing one head across two traces: both patterns and their difference."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from components.attention_figures import COLOR_SCALE


def _labels(first: list[str], second: list[str]) -> list[str]:
    """'Mary (1)' where both texts agree, 'John|Mary (9)' where they differ."""
    return [f"{a} ({i})" if a == b else f"{a}|{b} ({i})" for i, (a, b) in enumerate(zip(first, second))]


def comparison_figure(first: np.ndarray, second: np.ndarray, difference: np.ndarray | None,
                      tokens: tuple[list[str], list[str]], titles: tuple[str, str]) -> go.Figure:
    """The head's pattern in each trace and, if the traces align, second − first on a diverging scale."""
    panels = [(first, tokens[0], titles[0]), (second, tokens[1], titles[1])]
    if difference is not None:
        n = difference.shape[0]
        panels.append((difference, _labels(tokens[0][:n], tokens[1][:n]), "difference (second − first)"))
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for _, _, title in panels],
                           horizontal_spacing=0.06)
    for col, (z, labels, _) in enumerate(panels, start=1):
        signed = col == 3
        bound = float(np.abs(z).max()) or 1.0
        positions = list(range(len(labels)))
        figure.add_trace(go.Heatmap(
            z=z, x=positions, y=positions, colorscale="RdBu_r" if signed else COLOR_SCALE,
            zmin=-bound if signed else 0.0, zmax=bound if signed else 1.0, showscale=signed,
            text=[[f"{labels[q]} → {labels[k]}" for k in positions] for q in positions],
            hovertemplate="%{text}<br>%{z:.4f}<extra></extra>",
        ), row=1, col=col)
        step = max(1, len(labels) // 30)
        figure.update_xaxes(tickvals=positions[::step], ticktext=labels[::step], tickangle=-60, row=1, col=col)
        figure.update_yaxes(tickvals=positions[::step], ticktext=labels[::step], autorange="reversed", row=1, col=col)
    figure.update_layout(height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
