"""Plotly figures for activation patching: a layer × head grid and (head or layer) × position grids of the effect.

Effects are normalised (0 = corrupted run, 1 = clean run); the diverging colour scale is centred on the base
run's value (0 when denoising, 1 when noising), so "no effect" is white in both directions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.runtime.tokens import display_token
from components.figures.grids import layer_head_axes
from components.figures.grids import add_head_click_layer


def _scale(values: np.ndarray, centre: float) -> dict:
    bound = float(np.nanmax(np.abs(values - centre))) or 1.0
    return {"colorscale": "RdBu_r", "zmid": centre, "zmin": centre - bound, "zmax": centre + bound}


UNDEFINED_GREY = "#d9d9d9"
ROW_HEIGHT, MIN_CELLS_HEIGHT = 24, 140  # pixels per row of a position grid, and the least height of its cells
TOKEN_LABELS_HEIGHT = 110  # room for the slanted "position: token" labels under a position grid


def effect_grid(frame: pd.DataFrame, title: str, centre: float, defined: bool = True) -> go.Figure:
    """A clickable layer × head heatmap of ``frame["effect"]`` (one row per head, in layer, head order);
    ``defined=False`` draws every cell grey without a colour bar (the values mean nothing)."""
    n_layers, n_heads = int(frame["layer"].max()) + 1, int(frame["head_index"].max()) + 1
    values = frame["effect"].to_numpy().reshape(n_layers, n_heads)
    colours = (_scale(values, centre) if defined else
               {"z": np.zeros_like(values), "colorscale": [[0, UNDEFINED_GREY], [1, UNDEFINED_GREY]],
                "showscale": False})
    figure = go.Figure(go.Heatmap(**{"z": values, **colours}, x=list(range(n_heads)), y=list(range(n_layers)),
                                  hoverinfo="skip", colorbar={"title": "effect", "thickness": 12}))
    figure.update_layout(title={"text": title, "font": {"size": 14}}, height=max(300, 20 * n_layers + 80),
                         margin={"l": 40, "r": 10, "t": 60, "b": 10}, plot_bgcolor="white", dragmode=False)
    layer_head_axes(figure, n_layers, n_heads)
    hover = [f"{head}: effect {effect:.3f}" if defined else f"{head}: undefined"
             for head, effect in zip(frame["head"], frame["effect"])]
    return add_head_click_layer(figure, n_layers, n_heads, hover, marker_size=14)


def position_grid(frame: pd.DataFrame, rows: str, title: str, centre: float) -> go.Figure:
    """A heatmap of ``frame["effect"]`` with one row per value of ``rows`` ("head" or "layer") and one column per
    position, labelled with its clean token (and the corrupted one where they differ: '9: ␣John→␣Mary')."""
    table = frame.pivot(index=rows, columns="position", values="effect")
    if rows == "head":
        table = table.reindex(list(dict.fromkeys(frame["head"])))
    tokens = frame.drop_duplicates("position").sort_values("position")
    labels = [f"{position}: {display_token(clean)}" + ("" if clean == corrupted else f"→{display_token(corrupted)}")
              for position, clean, corrupted in zip(table.columns, tokens["clean_token"], tokens["corrupted_token"])]
    row_labels = [f"L{row}" if rows == "layer" else str(row) for row in table.index]
    values = table.to_numpy()
    cells = max(MIN_CELLS_HEIGHT, ROW_HEIGHT * len(row_labels))  # a few rows still get a readable band
    figure = go.Figure(go.Heatmap(
        z=values, x=labels, y=row_labels, hovertemplate="%{y} at %{x}: effect %{z:.3f}<extra></extra>",
        colorbar={"title": "effect", "thickness": 12}, **_scale(values, centre)))  # the bar spans the cells
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category", tickangle=-60, side="bottom", automargin=True)
    figure.update_layout(title={"text": title, "font": {"size": 14}}, height=cells + TOKEN_LABELS_HEIGHT + 50,
                         margin={"l": 10, "r": 10, "t": 50, "b": 10}, plot_bgcolor="white")
    return figure
