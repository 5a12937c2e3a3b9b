"""Plotly figures of attention patterns: the model mosaic, one head, a layer's heads, one token's view."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.methods.pooling import pool_pattern

THUMBNAIL_CELLS = 16
LOG_FLOOR = 1e-4
COLOR_SCALE = "Blues"


def prepare_pattern(pattern: np.ndarray, hide_first: bool, log_color: bool) -> np.ndarray:
    """What the colour shows: optionally without the first key column (NaN) and on a log10 scale."""
    shown = pattern.astype(np.float64, copy=True)
    if hide_first and shown.shape[1] > 1:
        shown[:, 0] = np.nan
    if log_color:
        shown = np.log10(np.maximum(shown, LOG_FLOOR))
    return shown


def mosaic_layout(n_tokens: int) -> tuple[int, int]:
    """(cell size in pixels of the mosaic, stride including the 1-cell gap) for a text length."""
    cells = min(n_tokens, THUMBNAIL_CELLS)
    return cells, cells + 1


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


def overview_mosaic(attentions: np.ndarray, hide_first: bool = False, log_color: bool = False,
                    marked: set[tuple[int, int]] | None = None, selected: tuple[int, int] | None = None) -> go.Figure:
    """Every layer × head as a thumbnail in one heatmap (one trace, so 270 heads draw in well under a second).

    Each thumbnail is scaled to its own maximum so weak heads stay visible. Coordinates are chosen so that
    rounding x gives the head and rounding y gives the layer (hover and click use that).
    """
    n_layers, n_heads, n_tokens, _ = attentions.shape
    cells, stride = mosaic_layout(n_tokens)
    canvas = np.full((n_layers * stride, n_heads * stride), np.nan)
    for layer in range(n_layers):
        for head in range(n_heads):
            thumb = pool_pattern(prepare_pattern(attentions[layer, head], hide_first, False), cells)
            if log_color:
                thumb = np.log10(np.maximum(thumb, LOG_FLOOR))
                thumb = (thumb - np.log10(LOG_FLOOR)) / -np.log10(LOG_FLOOR)
            peak = np.nanmax(thumb) if np.isfinite(thumb).any() else 1.0
            top, left = layer * stride, head * stride
            canvas[top:top + cells, left:left + cells] = thumb / (peak if peak > 0 else 1.0)
    ys = (np.arange(n_layers * stride) + 0.5) / stride - 0.5
    xs = (np.arange(n_heads * stride) + 0.5) / stride - 0.5
    figure = go.Figure(go.Heatmap(
        z=canvas.astype(np.float32), x=xs, y=ys, colorscale=COLOR_SCALE, showscale=False, zmin=0, zmax=1,
        hoverinfo="skip",
    ))
    mark_heads(figure, marked or set())
    if selected is not None:
        layer, head = selected
        figure.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5 - 1 / stride, y0=layer - 0.5,
                         y1=layer + 0.5 - 1 / stride, line={"color": "crimson", "width": 2})
    layer_head_axes(figure, n_layers, n_heads)
    figure.update_layout(height=max(320, 26 * n_layers + 60), margin={"l": 40, "r": 10, "t": 30, "b": 10},
                         plot_bgcolor="white", dragmode=False)
    return figure


def _token_axis_labels(tokens: list[str]) -> list[str]:
    return [f"{token} ({index})" for index, token in enumerate(tokens)]


def _head_heatmap(pattern: np.ndarray, tokens: list[str], hide_first: bool, log_color: bool,
                  show_scale: bool = True) -> go.Heatmap:
    shown = prepare_pattern(pattern, hide_first, log_color)
    labels = _token_axis_labels(tokens)
    positions = list(range(len(tokens)))
    hover_weights = np.where(np.isnan(shown), np.nan, pattern)
    return go.Heatmap(
        z=shown, x=positions, y=positions, colorscale=COLOR_SCALE, showscale=show_scale,
        customdata=hover_weights,
        text=[[f"{labels[q]} → {labels[k]}" for k in positions] for q in positions],
        hovertemplate="%{text}<br>weight %{customdata:.4f}<extra></extra>", hoverongaps=False,
        colorbar={"title": "log10 weight" if log_color else "weight"},
    )


def _token_axes(figure: go.Figure, tokens: list[str], row: int | None = None, col: int | None = None,
                show_labels: bool = True) -> None:
    step = max(1, len(tokens) // 60)
    ticks = list(range(0, len(tokens), step))
    text = [tokens[i] for i in ticks] if show_labels else [""] * len(ticks)
    figure.update_xaxes(tickvals=ticks, ticktext=text, tickangle=-60, row=row, col=col, showgrid=False)
    figure.update_yaxes(tickvals=ticks, ticktext=text, autorange="reversed", row=row, col=col, showgrid=False)


def head_figure(pattern: np.ndarray, tokens: list[str], title: str, hide_first: bool = False,
                log_color: bool = False) -> go.Figure:
    """One head's attention: query rows, key columns, hover shows both tokens and the weight."""
    figure = go.Figure(_head_heatmap(pattern, tokens, hide_first, log_color))
    _token_axes(figure, tokens)
    size = min(900, max(520, 26 * len(tokens) + 200))
    figure.update_layout(title=title, height=size, xaxis_title="key (attended to)", yaxis_title="query",
                         margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return figure


def layer_figure(layer_patterns: np.ndarray, tokens: list[str], layer: int, hide_first: bool = False,
                 log_color: bool = False, columns: int = 3) -> go.Figure:
    """All heads of one layer side by side, sharing the colour scale."""
    n_heads = layer_patterns.shape[0]
    rows = -(-n_heads // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[f"L{layer}H{h}" for h in range(n_heads)],
                           horizontal_spacing=0.04, vertical_spacing=0.06)
    for head in range(n_heads):
        row, col = head // columns + 1, head % columns + 1
        figure.add_trace(_head_heatmap(layer_patterns[head], tokens, hide_first, log_color, show_scale=head == 0),
                         row=row, col=col)
        _token_axes(figure, tokens, row, col, show_labels=len(tokens) <= 24)
    figure.update_traces(zmin=np.nanmin([prepare_pattern(p, hide_first, log_color) for p in layer_patterns]),
                         zmax=np.nanmax([prepare_pattern(p, hide_first, log_color) for p in layer_patterns]))
    figure.update_layout(height=330 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def token_strip_figure(attentions: np.ndarray, tokens: list[str], position: int, direction: str,
                       per_head: bool) -> go.Figure:
    """Where one token attends (direction 'from') or who attends to it ('to'), for every layer (× head).

    Rows are layers (mean over heads) or every head grouped by layer; columns are the other tokens.
    """
    n_layers, n_heads, n_tokens, _ = attentions.shape
    weights = attentions[:, :, position, :] if direction == "from" else attentions[:, :, :, position]
    if per_head:
        z = weights.reshape(n_layers * n_heads, n_tokens)
        row_names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    else:
        z = weights.mean(axis=1)
        row_names = [f"L{layer} (mean of heads)" for layer in range(n_layers)]
    labels = _token_axis_labels(tokens)
    verb = "attends to" if direction == "from" else "is attended by"
    figure = go.Figure(go.Heatmap(
        z=z, x=list(range(n_tokens)), y=list(range(len(row_names))), colorscale=COLOR_SCALE,
        text=[[f"{row}: {labels[position]} {verb} {labels[k]}" for k in range(n_tokens)] for row in row_names],
        hovertemplate="%{text}<br>weight %{z:.4f}<extra></extra>", colorbar={"title": "weight"},
    ))
    _token_axes(figure, tokens)
    step = n_heads if per_head else 1
    figure.update_yaxes(tickvals=list(range(0, len(row_names), step)), ticktext=row_names[::step],
                        autorange="reversed")
    if per_head:
        for layer in range(1, n_layers):
            figure.add_hline(y=layer * n_heads - 0.5, line={"color": "white", "width": 1})
    figure.add_vline(x=position, line={"color": "crimson", "width": 1, "dash": "dot"})
    row_height = 7 if per_head else 22
    figure.update_layout(height=min(2200, max(360, row_height * len(row_names) + 140)),
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure
