"""Layer × head grids shared by every figure: axes, a heatmap of one value per head, clickable head points, note marks.

Streamlit returns no selection for clicks on Plotly heatmaps, so a grid gets an invisible scatter layer with one
point per head at (x=head, y=layer); clicks on it come back as points (read by ``components.widgets.head_picker``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def layer_head_axes(figure: go.Figure, n_layers: int, n_heads: int) -> go.Figure:
    """Axes of a layer × head grid: heads H0… across the top, layers L0… downwards, one unit per head."""
    figure.update_xaxes(tickvals=list(range(n_heads)), ticktext=[f"H{h}" for h in range(n_heads)], side="top",
                        showgrid=False, zeroline=False, range=[-0.5, n_heads - 0.5])
    figure.update_yaxes(tickvals=list(range(n_layers)), ticktext=[f"L{layer}" for layer in range(n_layers)],
                        range=[n_layers - 0.5, -0.5], showgrid=False, zeroline=False)
    return figure


def mark_heads(figure: go.Figure, heads: set[tuple[int, int]]) -> go.Figure:
    """Put a ✎ in the top-right corner of each (layer, head) cell of a layer × head figure (heads with notes)."""
    for layer, head in sorted(heads):
        figure.add_annotation(x=head + 0.42, y=layer - 0.42, text="✎", showarrow=False, font={"size": 11})
    return figure


def grid_layout(figure: go.Figure, n_layers: int, n_heads: int, title: str) -> go.Figure:
    """Axes, size and title of a layer × head grid: the title on its own line above the H0… column labels."""
    layer_head_axes(figure, n_layers, n_heads)
    figure.update_layout(height=max(300, 20 * n_layers + 100), margin={"l": 40, "r": 10, "t": 80, "b": 10},
                         plot_bgcolor="white", dragmode=False,
                         title={"text": title, "font": {"size": 14}, "x": 0, "xref": "paper", "xanchor": "left",
                                "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 12}})
    return figure


def importance_grid(frame: pd.DataFrame, column: str, title: str, signed: bool,
                    colorbar_title: str | None = None) -> go.Figure:
    """A layer × head heatmap of one value column; signed values get a diverging scale centred on 0."""
    n_layers, n_heads = int(frame["layer"].max()) + 1, int(frame["head_index"].max()) + 1
    values = frame[column].to_numpy().reshape(n_layers, n_heads)
    bound = float(np.nanmax(np.abs(values), initial=0.0)) or 1.0  # all NaN (a score undefined everywhere): 1
    figure = go.Figure(go.Heatmap(
        z=values, x=list(range(n_heads)), y=list(range(n_layers)), hoverinfo="skip",
        colorscale="RdBu_r" if signed else "Viridis", zmid=0 if signed else None,
        zmin=-bound if signed else 0, zmax=bound,
        colorbar={"title": colorbar_title or column, "thickness": 12},
    ))
    return grid_layout(figure, n_layers, n_heads, title)


def hover_values(frame: pd.DataFrame, column: str) -> list[str]:
    """Per-head hover text 'L3H2: 0.0123' in (layer, head) order."""
    return [f"{head}: {value:.4g}" for head, value in zip(frame["head"], frame[column])]


OPEN_HEAD = "click to open it in the head view"
HOVER_TEXT = "#1f2933"
HOVER_LABEL = {"bgcolor": "white", "bordercolor": "#52606d", "font": {"color": HOVER_TEXT}}  # set here: from the
# invisible points' own colour Plotly would draw pale text on white


def add_head_click_layer(figure: go.Figure, n_layers: int, n_heads: int,
                         hover_text: Sequence[str] | None = None, marker_size: int = 18,
                         click_action: str = OPEN_HEAD) -> go.Figure:
    """Overlay one invisible, clickable point per head; ``hover_text`` is per head in (layer, head) order and
    ``click_action`` says in the hover what a click does (e.g. "click to add or remove it")."""
    layers = [layer for layer in range(n_layers) for _ in range(n_heads)]
    heads = [head for _ in range(n_layers) for head in range(n_heads)]
    text = list(hover_text) if hover_text is not None else [f"L{l}H{h}" for l, h in zip(layers, heads)]
    figure.add_trace(go.Scatter(
        x=heads, y=layers, mode="markers", text=text, hovertemplate=f"%{{text}}<extra>{click_action}</extra>",
        marker={"symbol": "square", "size": marker_size, "opacity": 0.0, "color": HOVER_TEXT},  # the label's side
        showlegend=False, name="heads", hoverlabel=HOVER_LABEL,                            # text takes this colour
        selected={"marker": {"opacity": 0.0}}, unselected={"marker": {"opacity": 0.0}},
    ))
    figure.update_layout(clickmode="event+select", dragmode=False)
    return figure
