"""Plotly figures of attention patterns: the model mosaic, one head, a layer's heads, one token's view."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.runtime.pooling import block_edges, pool_pattern
from components.figures.grids import layer_head_axes, mark_heads

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


def overview_mosaic(thumbnails: np.ndarray, log_color: bool = False,
                    marked: set[tuple[int, int]] | None = None, selected: tuple[int, int] | None = None) -> go.Figure:
    """Every layer × head as a thumbnail in one heatmap (one trace, so 270 heads draw in well under a second).

    ``thumbnails`` [layers, heads, c, c] are the trace's pooled patterns (with or without the sink). Each
    thumbnail is scaled to its own maximum so weak heads stay visible. Coordinates are chosen so that
    rounding x gives the head and rounding y gives the layer (hover and click use that).
    """
    n_layers, n_heads, n_tokens, _ = thumbnails.shape
    cells, stride = mosaic_layout(n_tokens)
    canvas = np.full((n_layers * stride, n_heads * stride), np.nan)
    for layer in range(n_layers):
        for head in range(n_heads):
            thumb = pool_pattern(thumbnails[layer, head], cells)
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



def token_labels(tokens: list[str], start: int = 0) -> list[str]:
    """Unique axis categories for tokens: 'token (position)'."""
    return [f"{token} ({start + index})" for index, token in enumerate(tokens)]


def span_labels(tokens: list[str], edges: np.ndarray) -> list[str]:
    """Axis categories for pooled blocks: the positions and first token of each block."""
    return [f"{a}–{b - 1} ({tokens[a]}…)" if b - a > 1 else f"{tokens[a]} ({a})" for a, b in zip(edges, edges[1:])]


KEY_TICKS = 30  # slanted key labels: more than this on a page-wide figure run into one another


def axis_ticks(labels: list[str], ticks: int = 60) -> dict:
    """At most ``ticks`` evenly spaced tick labels on a categorical axis (hover still names every cell)."""
    step = max(1, -(-len(labels) // ticks))
    shown = labels[::step]
    return {"tickvals": shown, "ticktext": [label.rsplit(" (", 1)[0] if "–" not in label else label.split(" (")[0]
                                            for label in shown]}


def pattern_heatmap(shown: np.ndarray, weights: np.ndarray, rows: list[str], cols: list[str], log_color: bool,
                    show_scale: bool = True, what: str = "weight") -> go.Heatmap:
    """A heatmap whose hover names the query and key from the axis categories (no per-cell text is sent);
    the weights travel separately only when the colour shows something else (log scale)."""
    same = np.array_equal(shown, weights, equal_nan=True)
    value = "%{z:.4f}" if same else "%{customdata:.4f}"
    return go.Heatmap(
        z=shown.astype(np.float32), x=cols, y=rows, customdata=None if same else weights.astype(np.float32),
        colorscale=COLOR_SCALE, showscale=show_scale, hoverongaps=False,
        hovertemplate=f"%{{y}} → %{{x}}<br>{what} {value}<extra></extra>",
        colorbar={"title": "log10 weight" if log_color else "weight"},
    )


def _square_layout(figure: go.Figure, n_rows: int, title: str) -> go.Figure:
    size = min(900, max(520, 26 * n_rows + 200))
    figure.update_layout(title=title, height=size, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return figure


def head_figure(pattern: np.ndarray, tokens: list[str], title: str, hide_first: bool = False,
                log_color: bool = False, first_query: int = 0, first_key: int = 0, max_keys: int = 1024,
                axis_titles: tuple[str, str] = ("key (attended to)", "query")) -> go.Figure:
    """One head's attention at full resolution: query rows, key columns, hover shows both tokens and the weight.

    ``pattern`` may be a window of a longer pattern starting at (``first_query``, ``first_key``); ``tokens``
    are all the text's tokens. Rows wider than ``max_keys`` are drawn as block means of keys.
    """
    n_queries, n_keys = pattern.shape
    rows = token_labels(tokens[first_query:first_query + n_queries], first_query)
    if n_keys > max_keys:
        pattern = pool_pattern(pattern, n_queries, max_keys, skip_first_key=hide_first and first_key == 0)
        cols = span_labels(tokens, block_edges(n_keys, max_keys) + first_key)
        shown = prepare_pattern(pattern, False, log_color)
    else:
        cols = token_labels(tokens[first_key:first_key + n_keys], first_key)
        shown = prepare_pattern(pattern, hide_first and first_key == 0, log_color)
    figure = go.Figure(pattern_heatmap(shown, np.where(np.isnan(shown), np.nan, pattern), rows, cols, log_color))
    figure.update_xaxes(title=axis_titles[0], tickangle=-60, showgrid=False, **axis_ticks(cols, KEY_TICKS))
    figure.update_yaxes(title=axis_titles[1], autorange="reversed", showgrid=False, **axis_ticks(rows))
    return _square_layout(figure, n_queries, title)


def pooled_head_figure(pattern: np.ndarray, tokens: list[str], title: str, cells: int, hide_first: bool = False,
                       log_color: bool = False, window: tuple[int, int, int] | None = None) -> go.Figure:
    """A long pattern as block means (at most ``cells`` × ``cells``), with the zoom ``window`` (first query,
    first key, size) outlined. Hover names each block's positions and its mean weight."""
    pooled = pool_pattern(pattern, cells, skip_first_key=hide_first)
    row_edges, col_edges = block_edges(pattern.shape[0], cells), block_edges(pattern.shape[1], cells)
    shown = prepare_pattern(pooled, False, log_color)
    rows, cols = span_labels(tokens, row_edges), span_labels(tokens, col_edges)
    figure = go.Figure(pattern_heatmap(shown, pooled, rows, cols, log_color, what="mean weight"))
    figure.update_xaxes(title="key block (attended to)", tickangle=-60, showgrid=False, **axis_ticks(cols, 12))
    figure.update_yaxes(title="query block", autorange="reversed", showgrid=False, **axis_ticks(rows, 24))
    if window is not None:
        first_query, first_key, size = window
        block = np.searchsorted
        figure.add_shape(type="rect", xref="x", yref="y", line={"color": "crimson", "width": 2},
                         x0=block(col_edges, first_key, "right") - 1.5,
                         x1=block(col_edges, first_key + size - 1, "right") - 0.5,
                         y0=block(row_edges, first_query, "right") - 1.5,
                         y1=block(row_edges, first_query + size - 1, "right") - 0.5)
    return _square_layout(figure, len(rows), title)


def layer_figure(layer_patterns: np.ndarray, tokens: list[str], layer: int, hide_first: bool = False,
                 log_color: bool = False, columns: int = 3, selected: int | None = None,
                 cells: int = 96) -> go.Figure:
    """All heads of one layer side by side on one colour scale (long texts as block means of ``cells``²);
    the ``selected`` head's title is marked. Token names appear on hover, not as ticks, so panels never collide."""
    n_heads, n_tokens = layer_patterns.shape[0], layer_patterns.shape[1]
    pooled = n_tokens > cells
    panels = [pool_pattern(pattern, cells, skip_first_key=hide_first) if pooled else
              prepare_pattern(pattern, hide_first, False) for pattern in layer_patterns]
    shown = [prepare_pattern(panel, False, log_color) for panel in panels]
    edges = block_edges(n_tokens, cells) if pooled else np.arange(n_tokens + 1)
    labels = span_labels(tokens, edges) if pooled else token_labels(tokens)
    rows = -(-n_heads // columns)
    titles = [f"<b>▶ L{layer}H{h} (selected)</b>" if h == selected else f"L{layer}H{h}" for h in range(n_heads)]
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.03,
                           vertical_spacing=0.12 / max(1, rows - 1) * 2 if rows > 1 else 0.1)
    for head in range(n_heads):
        row, col = head // columns + 1, head % columns + 1
        figure.add_trace(pattern_heatmap(shown[head], panels[head], labels, labels, log_color,
                                          show_scale=head == 0, what="mean weight" if pooled else "weight"),
                         row=row, col=col)
        figure.update_xaxes(showticklabels=False, showgrid=False, row=row, col=col)
        figure.update_yaxes(showticklabels=False, showgrid=False, autorange="reversed", row=row, col=col)
    low, high = (float(np.log10(LOG_FLOOR)), 0.0) if log_color else (0.0, 1.0)  # log10 of a weight is at most 0
    figure.update_traces(zmin=low, zmax=high)
    figure.update_annotations(font={"size": 13})
    figure.update_layout(height=300 * rows + 40, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def token_strip_figure(weights: np.ndarray, tokens: list[str], position: int, direction: str, per_head: bool,
                       max_columns: int = 1024) -> go.Figure:
    """Where one token attends (direction 'from') or who attends to it ('to'), for every layer (× head).

    ``weights`` [layers, heads, tokens] is the token's query row or key column of every head. Rows are layers
    (mean over heads) or every head grouped by layer; columns are the other tokens (block means above
    ``max_columns`` tokens).
    """
    n_layers, n_heads, n_tokens = weights.shape
    z = weights.reshape(n_layers * n_heads, n_tokens) if per_head else weights.mean(axis=1)
    row_names = ([f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)] if per_head
                 else [f"L{layer}" for layer in range(n_layers)])
    if n_tokens > max_columns:
        edges = block_edges(n_tokens, max_columns)
        z, cols = pool_pattern(z, len(row_names), max_columns), span_labels(tokens, edges)
        marker = span_labels(tokens, edges)[int(np.searchsorted(edges, position, "right")) - 1]
    else:
        cols = token_labels(tokens)
        marker = cols[position]
    verb = "attends to" if direction == "from" else "is attended by"
    figure = go.Figure(go.Heatmap(
        z=z.astype(np.float32), x=cols, y=row_names, colorscale=COLOR_SCALE, colorbar={"title": "weight"},
        hovertemplate=f"%{{y}}: {tokens[position]} ({position}) {verb} %{{x}}<br>weight %{{z:.4f}}<extra></extra>",
    ))
    figure.update_xaxes(title="key (where it looks)" if direction == "from" else "query (who looks at it)",
                        tickangle=-60, showgrid=False, **axis_ticks(cols))
    if per_head:
        centres = [f"L{layer}H{n_heads // 2}" for layer in range(n_layers)]
        figure.update_yaxes(tickvals=centres, ticktext=[f"L{layer}" for layer in range(n_layers)])
        for layer in range(1, n_layers):
            figure.add_hline(y=layer * n_heads - 0.5, line={"color": "white", "width": 1})
    figure.update_yaxes(title=f"layer (rows H0–H{n_heads - 1} within each)" if per_head else "layer (mean of heads)",
                        autorange="reversed", showgrid=False)
    figure.add_vline(x=cols.index(marker), line={"color": "crimson", "width": 1, "dash": "dot"})
    row_height = 4 if per_head else 22
    figure.update_layout(height=min(1300, max(360, row_height * len(row_names) + 160)),
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure
