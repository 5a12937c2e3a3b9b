"""Choosing a head: layer/head selectors bound to the URL state, and reading clicks on layer × head grids (built with
``components.figures.grids.add_head_click_layer``).
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from analysis.runtime.handle import ModelInfo
from components.state import bind


def head_picker(info: ModelInfo, state: dict) -> tuple[int, int]:
    """Two select boxes (layer, head); returns the chosen pair."""
    left, right = st.columns(2)
    with left:
        bind(st.selectbox, "layer", "Layer", options=list(range(info.n_layers)), index=int(state["layer"]),
             format_func=lambda layer: f"L{layer}")
    with right:
        bind(st.selectbox, "head", "Head", options=list(range(info.n_heads)), index=int(state["head"]),
             format_func=lambda head: f"H{head}")
    return int(state["layer"]), int(state["head"])


def clicked_point(figure: go.Figure, key: str) -> dict | None:
    """Draw a figure with an invisible click layer; return the point the user clicked, once (then a fresh
    widget, so the same click is not read again on the next rerun)."""
    counter_key = f"{key}_clicks"
    generation = st.session_state.get(counter_key, 0)
    event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key=f"{key}_{generation}",
                            config={"displayModeBar": False})
    points = event.selection.points if event is not None else []
    if not points:
        return None
    st.session_state[counter_key] = generation + 1
    return points[0]


def head_grid(figure: go.Figure, key: str) -> tuple[int, int] | None:
    """Draw a figure built with ``add_head_click_layer``; return the (layer, head) the user clicked, once."""
    point = clicked_point(figure, key)
    return None if point is None else (int(round(point["y"])), int(round(point["x"])))
