"""Plotly figures for what a head writes: the tokens its output promotes and suppresses."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.runtime.tokens import display_token

PROMOTED, SUPPRESSED = "#2b8a3e", "#c92a2a"


def logit_lens_bars(promoted: pd.DataFrame, suppressed: pd.DataFrame, title: str) -> go.Figure:
    """Horizontal bars: the head's direct logit for its most promoted (top) and most suppressed (bottom) tokens."""
    shown = pd.concat([suppressed.iloc[::-1], promoted.iloc[::-1]], ignore_index=True)
    labels = [f"{display_token(token)} #{token_id}" for token, token_id in zip(shown["token"], shown["token_id"])]
    figure = go.Figure(go.Bar(
        y=labels, x=shown["logit"], orientation="h",
        marker_color=[PROMOTED if value > 0 else SUPPRESSED for value in shown["logit"]],
        hovertemplate="%{y}: %{x:+.3f}<extra></extra>",
    ))
    figure.update_layout(title={"text": title, "font": {"size": 14}}, height=120 + 22 * len(shown),
                         xaxis_title="direct logit (frozen final norm)", margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_yaxes(categoryorder="array", categoryarray=labels)
    return figure
