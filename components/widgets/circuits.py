"""Widgets of the circuits page, bound to the URL: the scoring method and its steps, the ablation, how the circuit
is chosen and its number of edges; a click on a circuit node opens its head view; the circuit's heads go to the
ablation lab."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.heads import head_label, heads_frame
from analysis.runtime.interventions import HeadIntervention
from analysis.methods.circuit_graph import PAGE_SELECTIONS
from analysis.methods.edge_attribution import MAX_STEPS, SCORE_METHODS
from analysis.methods.faithfulness import ABLATIONS
from analysis.methods.path_patching import PATH_INPUTS
from analysis.methods.ablation_spec import format_ablation
from components.figures.grids import add_head_click_layer, importance_grid
from components.navigation import page_file
from components.widgets.head_picker import head_grid
from components.state import bind, update_state

_TO_LAB = "circuit_open_lab"
HELP = {
    "method": "EAP (Syed et al. 2023): Δwrite · ∂metric/∂input for every edge from one backward pass. EAP-IG "
              "(Hanna et al. 2024): the gradient averaged over points from the corrupted to the clean input "
              "embeddings (integrated gradients), usually more faithful; one step is EAP.",
    "ablation": "What an edge outside the circuit carries: the upstream node's write on the corrupted prompt "
                "(patch, the default), or its mean over the corrupted prompt's positions. Conclusions change with "
                "it (Miller et al. 2024).",
    "select": "Top n: the n edges with the largest |score|. Greedy (EAP-IG's): from the logits up, the best edge "
              "into the circuit so far. Either way, edges off a path from the input to the logits are pruned.",
}


def circuit_controls(state: dict, n_edges: int) -> tuple[str, int, str, str, int]:
    """Method, steps, ablation, selection and the number of edges; returns them."""
    columns = st.columns([2, 1, 2, 2])
    with columns[0]:
        bind(st.radio, "circuit_method", "Edge scores", options=list(SCORE_METHODS), format_func=SCORE_METHODS.get,
             index=list(SCORE_METHODS).index(state["circuit_method"]), help=HELP["method"])
    with columns[1]:
        bind(st.number_input, "circuit_steps", "EAP-IG steps", min_value=1, max_value=MAX_STEPS,
             value=int(state["circuit_steps"]), disabled=state["circuit_method"] != "eap-ig",
             help="Integration points between the corrupted and the clean embeddings (default 5).")
    with columns[2]:
        bind(st.radio, "circuit_ablation", "Edges outside the circuit", options=list(ABLATIONS),
             format_func=ABLATIONS.get, index=list(ABLATIONS).index(state["circuit_ablation"]), help=HELP["ablation"])
    with columns[3]:
        bind(st.radio, "circuit_select", "Choose edges", options=list(PAGE_SELECTIONS), format_func=PAGE_SELECTIONS.get,
             index=list(PAGE_SELECTIONS).index(state["circuit_select"]), help=HELP["select"])
    limit = min(n_edges, 2000)
    bind(st.slider, "circuit_edges", "Edges in the circuit (before pruning)", min_value=1, max_value=limit,
         value=min(int(state["circuit_edges"]), limit),
         help=f"The graph has {n_edges:,} edges; the figure redraws from the stored scores.")
    steps = int(state["circuit_steps"]) if state["circuit_method"] == "eap-ig" else 1
    return (state["circuit_method"], steps, state["circuit_ablation"], state["circuit_select"],
            min(int(state["circuit_edges"]), limit))


def path_controls(state: dict) -> tuple[str, str]:
    """The receivers of path patching and which of their head inputs the sender reaches; returns both."""
    columns = st.columns([3, 1])
    with columns[0]:
        bind(st.text_input, "path_receivers", "Receivers", value=state["path_receivers"],
             placeholder="e.g. L23H3, L20H0 (heads), MLP29, logits",
             help="The nodes the sender's corrupted write reaches; every other path from the sender stays clean "
                  "and everything downstream of the receivers is recomputed (Wang et al. 2022).")
    with columns[1]:
        bind(st.selectbox, "path_inputs", "Receiver heads' inputs", options=list(PATH_INPUTS),
             format_func=PATH_INPUTS.get, index=list(PATH_INPUTS).index(state["path_inputs"]),
             help="Which of a receiver head's inputs the sender reaches: its query (Q-composition), key or value. "
                  "Under grouped-query attention a key or value input belongs to the head's KV group.")
    return state["path_receivers"].strip(), state["path_inputs"]


def path_grid(paths: pd.DataFrame, n_layers: int, n_heads: int, title: str) -> tuple[int, int] | None:
    """The head senders' path effects as a layer × head grid (blank: not upstream of a receiver), the other
    senders (the input, MLPs) in a table; returns the head the user clicked, once."""
    heads = paths[paths["head"] >= 0]
    effect = np.full((n_layers, n_heads), np.nan)
    effect[heads["layer"].to_numpy(), heads["head"].to_numpy()] = heads["effect"].to_numpy()
    frame = heads_frame(n_layers, n_heads, effect=effect)
    hover = [f"{name}: {value:+.3f}" if np.isfinite(value) else f"{name}: not upstream of the receivers"
             for name, value in zip(frame["head"], frame["effect"])]
    clicked = head_grid(add_head_click_layer(importance_grid(frame, "effect", title, signed=True), n_layers, n_heads,
                                             hover, marker_size=14), key="circuit_paths")
    others = paths[paths["head"] < 0][["sender", "effect"]]
    if not others.empty:
        st.dataframe(others.reindex(others["effect"].abs().sort_values(ascending=False).index).head(12),
                     hide_index=True, width="content")
    return clicked


def circuit_chart(figure: go.Figure, key: str) -> str | None:
    """Draw the circuit graph; return the node the user clicked, once."""
    counter_key = f"{key}_clicks"
    generation = st.session_state.get(counter_key, 0)
    event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key=f"{key}_{generation}",
                            config={"displayModeBar": False})
    points = [point for point in (event.selection.points if event is not None else []) if point.get("customdata")]
    if not points:
        return None
    st.session_state[counter_key] = generation + 1  # a fresh widget next time, so the click is used once
    return str(points[0]["customdata"])


def open_head_view(node: str) -> None:
    """Switch to the head view of a head node (``L3H2``); other nodes get a message."""
    if not node.startswith("L") or "H" not in node:
        st.info(f"{node} is not a head; click a head (L…H…) to open its head view.")
        return
    layer, head = (int(part) for part in node[1:].split("H"))
    update_state(layer=layer, head=head)
    st.switch_page(page_file("head"))


def lab_button(heads: list[tuple[int, int]]) -> None:
    """A button selecting exactly the circuit's heads in the ablation lab, resampled from the corrupted prompt,
    and opening the lab."""
    def select() -> None:
        update_state(ablate=format_ablation([HeadIntervention(layer, head, "resample", 0.0) for layer, head in heads]))
        st.session_state[_TO_LAB] = True

    st.button(f"Send the circuit's {len(heads)} heads to the ablation lab", disabled=not heads, key="circuit_to_lab",
              on_click=select, help="The lab gets exactly these heads, their outputs resampled from the corrupted "
                                    f"prompt: {heads_text(heads)[:300]}")
    if st.session_state.pop(_TO_LAB, False):
        st.switch_page(page_file("lab"))


def show(flag: str) -> None:
    """A button's callback: from now on this session shows the section behind ``flag``."""
    st.session_state[flag] = True


def heads_text(heads: list[tuple[int, int]]) -> str:
    """The heads as 'L1H2, L3H4'."""
    return ", ".join(head_label(layer, head) for layer, head in heads)
