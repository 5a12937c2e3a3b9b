"""Figures of QK attribution: clickable cells on a head's pattern, the query × key term matrix, each side's bars."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.methods.qk_attribution import QKAttribution

MAX_CLICK_CELLS = 20_000  # invisible click points beyond this would make the figure heavy


def add_cell_click_layer(figure: go.Figure, first_query: int = 0, first_key: int = 0) -> go.Figure:
    """Overlay one invisible, clickable point per causal cell (key ≤ query) of a head figure (its heatmap's axis
    categories, one per token, from position ``first_query`` / ``first_key``); each point carries its (query,
    key) positions. Skipped above ``MAX_CLICK_CELLS`` cells."""
    rows, cols = list(figure.data[0].y), list(figure.data[0].x)
    queries = first_query + np.arange(len(rows))
    keys = first_key + np.arange(len(cols))
    query_grid, key_grid = np.meshgrid(queries, keys, indexing="ij")
    causal = key_grid <= query_grid
    if causal.sum() > MAX_CLICK_CELLS:
        return figure
    query_index, key_index = np.nonzero(causal)
    figure.add_trace(go.Scatter(
        x=[cols[k] for k in key_index], y=[rows[q] for q in query_index], mode="markers",
        # plain lists: a numpy array goes to the browser as a typed array, whose rows come back from a click as
        # {"0": query, "1": key} objects rather than pairs
        customdata=np.stack([queries[query_index], keys[key_index]], axis=1).tolist(),
        hovertemplate="%{y} → %{x}<extra>click: why does the head attend here?</extra>",
        marker={"symbol": "square", "size": 10, "opacity": 0.0}, showlegend=False, name="cells",
        selected={"marker": {"opacity": 0.0}}, unselected={"marker": {"opacity": 0.0}},
    ))
    figure.update_layout(clickmode="event+select", dragmode=False)
    return figure


def _top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-np.abs(values), kind="stable")[:k]


def term_matrix_figure(attribution: QKAttribution, k: int = 8) -> go.Figure:
    """The largest query-side × key-side terms: the ``k`` components with the largest share on each side."""
    sides = attribution.sides()
    rows = _top(sides["query_side"].to_numpy(), k)
    cols = _top(sides["key_side"].to_numpy(), k)
    names = np.asarray(attribution.components)
    values = attribution.matrix[np.ix_(rows, cols)]
    bound = float(np.abs(values).max()) or 1.0
    figure = go.Figure(go.Heatmap(
        z=values, x=[f"{name} " for name in names[cols]], y=list(names[rows]), colorscale="RdBu_r", zmid=0,
        zmin=-bound, zmax=bound, texttemplate="%{z:.2f}",
        hovertemplate="query side %{y} × key side %{x}: %{z:.3f}<extra></extra>", colorbar={"title": "term"},
    ))
    figure.update_xaxes(title="key-side component (at the key)", side="top")
    figure.update_yaxes(title="query-side component (at the query)", autorange="reversed")
    figure.update_layout(height=120 + 34 * len(rows), margin={"l": 10, "r": 10, "t": 90, "b": 10},
                         title={"text": f"Largest terms of the logit {attribution.logit:.2f}", "font": {"size": 14}})
    return figure


def side_bars_figure(attribution: QKAttribution, side: str, k: int = 10) -> go.Figure:
    """The ``k`` components with the largest share of the logit on one side ("query_side" or "key_side")."""
    sides = attribution.sides()
    order = _top(sides[side].to_numpy(), k)[::-1]
    values = sides[side].to_numpy()[order]
    figure = go.Figure(go.Bar(x=values, y=sides["component"].to_numpy()[order], orientation="h",
                              marker={"color": np.where(values >= 0, "#2166ac", "#b2182b")},
                              hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    where = "query" if side == "query_side" else "key"
    figure.update_layout(height=80 + 24 * len(order), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         title={"text": f"At the {where} ({'i' if where == 'query' else 'j'}): share of the logit",
                                "font": {"size": 13}}, xaxis_title="share of the logit")
    return figure
