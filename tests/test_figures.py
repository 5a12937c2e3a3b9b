"""Figures read correctly: colour scales that match what they show, titles clear of the toolbar, readable hovers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.figures.ablation import downstream_figure, paired_bars
from components.figures.attention import KEY_TICKS, LOG_FLOOR, head_figure, layer_figure
from components.figures.grids import add_head_click_layer
from components.figures.patching import MIN_CELLS_HEIGHT, TOKEN_LABELS_HEIGHT, position_grid


def _patterns(n_heads: int, n_tokens: int, seed: int = 0) -> np.ndarray:
    """Causal softmax patterns [heads, query, key]."""
    scores = np.random.default_rng(seed).normal(size=(n_heads, n_tokens, n_tokens))
    scores[:, np.triu_indices(n_tokens, 1)[0], np.triu_indices(n_tokens, 1)[1]] = -np.inf
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def test_log_colour_layer_view_scale_ends_at_zero():
    tokens = [f"t{i}" for i in range(6)]
    figure = layer_figure(_patterns(4, 6), tokens, layer=0, log_color=True)
    assert {(trace.zmin, trace.zmax) for trace in figure.data} == {(np.log10(LOG_FLOOR), 0.0)}
    linear = layer_figure(_patterns(4, 6), tokens, layer=0)
    assert {(trace.zmin, trace.zmax) for trace in linear.data} == {(0.0, 1.0)}


def test_next_token_title_starts_at_the_chart_edge_so_a_narrow_column_keeps_it():
    top = pd.DataFrame({"token": [" Mary", " John", " the"], "before": [0.8, 0.1, 0.05], "after": [0.3, 0.5, 0.1]})
    for figure in (paired_bars(top), paired_bars(top, clean_only=True)):
        title = figure.layout.title
        assert title.text == "Next-token probability"
        assert (title.x, title.xref, title.xanchor) == (0, "container", "left")


def test_every_after_minus_before_panel_has_its_colour_bar():
    heads = ["L2H1", "L3H0"]
    before = {head: _patterns(1, 5, seed)[0] for seed, head in enumerate(heads)}
    after = {head: _patterns(1, 5, seed + 7)[0] for seed, head in enumerate(heads)}
    figure = downstream_figure(pd.DataFrame({"head": heads}), before, after, [f"t{i}" for i in range(5)])
    scaled = [trace for trace in figure.data if trace.showscale]
    assert len(scaled) == len(heads) and all(trace.colorscale == figure.data[2].colorscale for trace in scaled)
    for row, trace in enumerate(scaled, start=1):
        bottom, top = figure.get_subplot(row, 3).yaxis.domain
        assert trace.colorbar.title.text == "Δ weight" and bottom < trace.colorbar.y < top
        change = after[heads[row - 1]] - before[heads[row - 1]]
        assert np.isclose(trace.zmax, np.abs(change).max()) and trace.zmin == -trace.zmax


def _luminance(colour: str) -> float:
    channels = np.array([int(colour.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)]) / 255
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def test_head_grid_hover_text_is_dark_on_a_light_label():
    figure = add_head_click_layer(go.Figure(), n_layers=2, n_heads=3)
    points = figure.data[-1]
    background = {"white": "#ffffff"}.get(points.hoverlabel.bgcolor, points.hoverlabel.bgcolor)
    for text in (points.hoverlabel.font.color, points.marker.color):  # the head's values; what a click does
        lighter, darker = sorted([_luminance(background), _luminance(text)], reverse=True)
        assert (lighter + 0.05) / (darker + 0.05) >= 7  # WCAG AAA contrast for text


def test_a_position_grid_of_three_heads_keeps_a_readable_band_and_colour_bar():
    tokens = [" When", " Mary", " and", " John"]
    frame = pd.DataFrame([{"head": head, "position": position, "effect": 0.1 * position,
                           "clean_token": token, "corrupted_token": " Bob" if position == 1 else token}
                          for head in ("L23H3", "L20H0", "L17H4") for position, token in enumerate(tokens)])
    figure = position_grid(frame, "head", "Head × position", centre=0.0)
    cells = figure.layout.height - TOKEN_LABELS_HEIGHT - figure.layout.margin.t
    assert cells >= MIN_CELLS_HEIGHT  # the three rows are not squashed under the slanted token labels
    assert figure.data[0].colorbar.len is None  # the colour bar spans the cells' full height
    assert list(figure.data[0].y) == ["L23H3", "L20H0", "L17H4"] and "1: ␣Mary→␣Bob" in list(figure.data[0].x)


def test_a_long_window_labels_few_enough_keys_to_read_and_hover_still_names_every_cell():
    tokens = [f"word{index}" for index in range(1024)]
    window = np.full((64, 512), 1 / 512)
    figure = head_figure(window, tokens, "window", first_query=600, first_key=100)
    assert len(figure.layout.xaxis.tickvals) <= KEY_TICKS < len(figure.data[0].x) == 512
    assert figure.data[0].x[0] == "word100 (100)" and figure.data[0].y[0] == "word600 (600)"
