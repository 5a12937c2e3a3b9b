"""Plotly figures for head importance and the ablation lab: layer × head grids, paired bars, loss curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.tokens import display_token
from components.figures.grids import grid_layout

BEFORE, AFTER = "#9aa5b1", "#d6336c"


def selection_grid(n_layers: int, n_heads: int, selection: list[HeadIntervention]) -> go.Figure:
    """The lab's selection: each selected head coloured by its scale (0 removed … 2 doubled), others blank."""
    scales = np.full((n_layers, n_heads), np.nan)
    for edit in selection:
        scales[edit.layer, edit.head] = edit.scale
    figure = go.Figure(go.Heatmap(
        z=scales, x=list(range(n_heads)), y=list(range(n_layers)), hoverinfo="skip", zmin=0, zmax=2, zmid=1,
        colorscale="RdBu", xgap=1, ygap=1, colorbar={"title": "scale", "thickness": 12},
    ))
    figure = grid_layout(figure, n_layers, n_heads, "Selected heads")
    figure.update_layout(plot_bgcolor="#f4f5f7")
    return figure


def paired_bars(top: pd.DataFrame, k: int = 10, clean_only: bool = False) -> go.Figure:
    """Next-token probabilities before vs after for the k tokens most likely in either run (only the clean
    run's bars when nothing is edited)."""
    shown = top.sort_values("before", ascending=False).head(k) if clean_only else top.head(k)
    shown = shown.iloc[::-1]
    labels = [f"{display_token(token)} " for token in shown["token"]]
    bars = [go.Bar(y=labels, x=shown["before"], orientation="h", name="clean", marker_color=BEFORE,
                   hovertemplate="%{y}: %{x:.4f}<extra>clean</extra>")]
    if not clean_only:
        bars[0].name = "before (clean)"
        bars.append(go.Bar(y=labels, x=shown["after"], orientation="h", name="after (ablated)", marker_color=AFTER,
                           hovertemplate="%{y}: %{x:.4f}<extra>after</extra>"))
    figure = go.Figure(bars)
    figure.update_layout(barmode="group", height=80 + (34 if len(bars) > 1 else 24) * len(shown),
                         title={"text": "Next-token probability", "x": 0, "xref": "container", "xanchor": "left",
                                "pad": {"l": 10}},  # from the chart's left edge: a narrow column does not cut it
                         xaxis={"title": "probability", "rangemode": "tozero"},
                         legend={"orientation": "h", "y": -0.15}, showlegend=len(bars) > 1,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def loss_curve(tokens: list[str], before: np.ndarray, after: np.ndarray | None) -> go.Figure:
    """Loss of each predicted token (positions 1…n-1) before and after (only the clean loss if ``after`` is None)."""
    positions = list(range(1, len(tokens)))
    labels = [f"{position}: {display_token(tokens[position])}" for position in positions]
    runs = [("before (clean)" if after is not None else "clean", before, BEFORE)]
    if after is not None:
        runs.append(("after (ablated)", after, AFTER))
    figure = go.Figure([go.Scatter(x=positions, y=values, name=name, mode="lines+markers", line={"color": color},
                                   text=labels, hovertemplate=f"%{{text}}<br>loss %{{y:.3f}}<extra>{name}</extra>")
                        for name, values, color in runs])
    step = max(1, len(positions) // 30)
    figure.update_xaxes(tickvals=positions[::step], ticktext=[display_token(tokens[p]) for p in positions[::step]],
                        tickangle=-60)
    figure.update_layout(title="Loss of each token (nats)", height=360, yaxis={"title": "loss", "rangemode": "tozero"},
                         legend={"orientation": "h", "y": 1.12}, showlegend=len(runs) > 1,
                         margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return figure


def downstream_figure(downstream: pd.DataFrame, before: dict[str, np.ndarray], after: dict[str, np.ndarray],
                      tokens: list[str], n: int = 3) -> go.Figure:
    """The n most changed downstream heads: attention before | after | after − before."""
    heads = list(downstream["head"].head(n))
    figure = make_subplots(rows=len(heads), cols=3, horizontal_spacing=0.05, vertical_spacing=0.08,
                           subplot_titles=[f"{head} {part}" for head in heads
                                           for part in ("before", "after", "after − before")])
    labels = [f"{index}: {display_token(token)}" for index, token in enumerate(tokens)]  # unique categories
    traces, rows, cols = [], [], []
    for row, head in enumerate(heads, start=1):
        difference = after[head] - before[head]
        bound = float(np.abs(difference).max()) or 1.0
        bottom, top = figure.get_subplot(row, 3).yaxis.domain
        change_scale = {"title": "Δ weight", "thickness": 10, "len": top - bottom, "y": (bottom + top) / 2}
        for col, (z, scale, low, high) in enumerate([(before[head], "Blues", 0, 1), (after[head], "Blues", 0, 1),
                                                    (difference, "RdBu_r", -bound, bound)], start=1):
            traces.append(go.Heatmap(z=z.astype(np.float32), x=labels, y=labels, colorscale=scale, zmin=low,
                                     zmax=high, showscale=col == 3, colorbar=change_scale if col == 3 else None,
                                     hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>"))
            rows.append(row)
            cols.append(col)
    figure.add_traces(traces, rows=rows, cols=cols)
    figure.update_yaxes(autorange="reversed", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(height=60 + 260 * max(1, len(heads)), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
