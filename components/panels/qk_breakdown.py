"""The head view's "why does this head attend here" section: one cell's logit as query × key component terms."""
from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.heads import HeadSpecError, parse_heads
from analysis.methods.logit_attribution import LogitAttributionUnsupported
from analysis.methods.qk_attribution import QKAttribution
from analysis.runtime.handle import ModelInfo
from analysis.runtime.weights import WeightsUnavailable
from components.caches.qk import cached_qk_breakdown
from components.figures.qk import side_bars_figure, term_matrix_figure
from components.state import update_state

EXPLANATION = (
    "The attention logit q_i·k_j·scale split into terms, one per pair (component written into the stream at the "
    "query i, component written at the key j): the embeddings (input), each earlier head, each earlier MLP and "
    "the biases. Every norm's scale is frozen at this run and the model's own rotary embedding is applied, so "
    "the terms add up to the logit exactly; a term is what that pair adds with the norms held fixed (Elhage et "
    "al. 2021, the QK circuit). The competitor is the key that would win without the top term.")


def _heads_among(components: list[str], info: ModelInfo) -> list[tuple[int, int]]:
    heads = []
    for name in components:
        try:
            heads += parse_heads(name, info.n_layers, info.n_heads)
        except HeadSpecError:  # input, MLPs, bias
            continue
    return heads


def _attribution_view(attribution: QKAttribution, info: ModelInfo, key: str) -> None:
    """The term matrix, both sides' bars, links to the contributing heads and the CSV of every term."""
    st.plotly_chart(term_matrix_figure(attribution), key=f"{key}_matrix", config={"displayModeBar": False})
    left, right = st.columns(2)
    for column, side in ((left, "query_side"), (right, "key_side")):
        with column:
            st.plotly_chart(side_bars_figure(attribution, side), key=f"{key}_{side}", config={"displayModeBar": False})
    sides = attribution.sides()
    ranked = sides.assign(size=np.maximum(sides["query_side"].abs(), sides["key_side"].abs())).sort_values(
        "size", ascending=False)
    heads = _heads_among(list(ranked["component"].head(12)), info)[:6]
    if heads:
        st.caption("Open a contributing head in the head view:")
        buttons = st.columns(len(heads))
        for button, (layer, head) in zip(buttons, heads):
            button.button(f"L{layer}H{head}", key=f"{key}_open_L{layer}H{head}", on_click=update_state,
                          kwargs={"layer": layer, "head": head, "qk_query": -1, "qk_key": -1})
    st.download_button("Download every term (CSV)", attribution.terms().to_csv(index=False).encode(),
                       file_name=f"qk_L{attribution.layer}H{attribution.head}_{attribution.query}_{attribution.key}.csv",
                       mime="text/csv", key=f"{key}_csv")


def qk_breakdown_panel(state: dict, info: ModelInfo, tokens: list[str], pattern: np.ndarray) -> None:
    """Explain the cell (``qk_query``, ``qk_key``) of the selected head, if one is chosen."""
    query, key = int(state["qk_query"]), int(state["qk_key"])
    if query < 0:
        st.caption("Click a cell of the pattern to see why the head attends there (query × key component terms).")
        return
    layer, head = int(state["layer"]), int(state["head"])
    st.subheader(f"Why L{layer}H{head} attends from {tokens[query]!r} ({query}) to {tokens[key]!r} ({key})"
                 if 0 <= key <= query < len(tokens) else "Why the head attends there")
    try:
        breakdown = cached_qk_breakdown(state["model"], state["text"], int(state["max_tokens"]), layer, head, query,
                                        key)
    except (LogitAttributionUnsupported, WeightsUnavailable, ValueError) as error:
        st.info(str(error))
        return
    st.caption(EXPLANATION)
    cell, rival = breakdown.cell, breakdown.competitor
    metrics = st.columns(3)
    metrics[0].metric("Logit", f"{cell.logit:.3f}")
    metrics[1].metric("Attention weight", f"{float(pattern[query, key]):.3f}")
    metrics[2].metric("Competitor", "none" if rival is None else f"{tokens[rival.key]!r} ({rival.key})",
                      help="The key that would get the largest logit if the top term were taken away at every key.")
    st.button("Clear the cell", key="qk_clear", on_click=update_state, kwargs={"qk_query": -1, "qk_key": -1})
    tabs = st.tabs([f"This key ({key})"] + ([] if rival is None else [f"Competitor ({rival.key})"]))
    with tabs[0]:
        _attribution_view(cell, info, "qk_cell")
    if rival is not None:
        with tabs[1]:
            _attribution_view(rival, info, "qk_rival")
