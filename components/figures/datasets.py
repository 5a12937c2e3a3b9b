"""Plotly figures for dataset sweeps: per-head confidence intervals and one head's values over the rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

MEAN_COLOUR, BAND_COLOUR, POINT_COLOUR = "#d6336c", "rgba(214, 51, 108, 0.15)", "#495057"


def summary_hover(summary: pd.DataFrame, value: str) -> list[str]:
    """Per-head hover text 'L3H2: mean 0.41 [0.37, 0.45], n = 100' in (layer, head) order."""
    def one(row) -> str:
        interval = f" [{row.ci_low:.3g}, {row.ci_high:.3g}]" if np.isfinite(row.ci_half) else ""
        return f"{row.head}: {value} mean {row.mean:.3g}{interval}, n = {row.n}"
    return [one(row) for row in summary.itertuples()]


def interval_figure(summary: pd.DataFrame, value: str, k: int = 20) -> go.Figure:
    """The ``k`` heads with the largest |mean|, each as its mean with the 95 % interval (a forest plot)."""
    top = summary.reindex(summary["mean"].abs().sort_values(ascending=False).index).head(k).iloc[::-1]
    figure = go.Figure(go.Scatter(
        x=top["mean"], y=top["head"], mode="markers", marker={"color": MEAN_COLOUR, "size": 8},
        error_x={"type": "data", "symmetric": False, "array": (top["ci_high"] - top["mean"]).fillna(0),
                 "arrayminus": (top["mean"] - top["ci_low"]).fillna(0), "color": MEAN_COLOUR, "thickness": 1.5},
        customdata=np.stack([top["ci_low"], top["ci_high"], top["n"]], axis=1),
        hovertemplate="%{y}: mean %{x:.3g} [%{customdata[0]:.3g}, %{customdata[1]:.3g}], n = %{customdata[2]}"
                      "<extra></extra>"))
    figure.add_vline(x=0, line={"color": "#adb5bd", "width": 1})
    figure.update_layout(height=max(260, 22 * len(top) + 90), margin={"l": 70, "r": 10, "t": 50, "b": 40},
                         title={"text": f"Top {len(top)} heads by |mean {value}|, with 95 % intervals",
                                "font": {"size": 14}, "x": 0},
                         xaxis_title=value, plot_bgcolor="white", showlegend=False, dragmode=False)
    figure.update_xaxes(showgrid=True, gridcolor="#eef0f2")
    return figure


def row_distribution(values: pd.DataFrame, value: str, head: str, texts: list[str], mean: float,
                     interval: tuple[float, float]) -> go.Figure:
    """One head's value on every row (click a point to pick the row), with the mean and its 95 % interval."""
    rows = values["row"].to_numpy()
    preview = [texts[row][:80] + ("…" if len(texts[row]) > 80 else "") for row in rows]
    figure = go.Figure()
    low, high = interval
    if np.isfinite(low) and np.isfinite(high):
        figure.add_hrect(y0=low, y1=high, fillcolor=BAND_COLOUR, line_width=0)
    figure.add_hline(y=mean, line={"color": MEAN_COLOUR, "width": 2})
    figure.add_trace(go.Scatter(
        x=rows, y=values[value], mode="markers", marker={"color": POINT_COLOUR, "size": 7}, customdata=preview,
        hovertemplate="row %{x}: %{y:.4g}<br>%{customdata}<extra>click to pick this row</extra>", name="rows",
        selected={"marker": {"color": MEAN_COLOUR, "size": 11}}))
    figure.update_layout(height=320, margin={"l": 50, "r": 10, "t": 50, "b": 40}, plot_bgcolor="white",
                         title={"text": f"{head}: {value} on each row (line: mean, band: 95 % interval)",
                                "font": {"size": 14}, "x": 0},
                         xaxis_title="row", yaxis_title=value, showlegend=False, clickmode="event+select",
                         dragmode=False)
    figure.update_xaxes(showgrid=False)
    figure.update_yaxes(showgrid=True, gridcolor="#eef0f2")
    return figure
