"""The lookback ratio of every head at each generated step, as a heads × steps heatmap."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.heads import head_label


def lookback_figure(ratios: np.ndarray, step_tokens: list[str]) -> go.Figure:
    """Rows: heads L0H0 …; columns: generated steps (their tokens); colour: prompt share of the attention."""
    n_layers, n_heads, steps = ratios.shape
    rows = [head_label(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    cols = [f"{step}: {token}" for step, token in enumerate(step_tokens)]
    figure = go.Figure(go.Heatmap(z=ratios.reshape(-1, steps).astype(np.float32), x=cols, y=rows, zmin=0, zmax=1,
                                  colorscale="Viridis", colorbar={"title": "lookback"},
                                  hovertemplate="%{y} at step %{x}: %{z:.3f}<extra></extra>"))
    figure.update_yaxes(autorange="reversed", tickvals=rows[::n_heads], ticktext=[f"L{l}" for l in range(n_layers)])
    figure.update_layout(height=min(900, 160 + 3 * len(rows)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         title={"text": "Lookback ratio: attention to the prompt / (prompt + generated), means per key",
                                "font": {"size": 13}})
    return figure
