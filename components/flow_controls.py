"""Widgets shared by the flow, head-writes and compare pages: a token position, a layer, a heads box,
and a head picker that follows clicks made further down the same page.

Each is bound to a URL field; a value from a link that does not fit this model or text is replaced
by the default with a warning saying so.
"""
from __future__ import annotations

import streamlit as st

from analysis.runtime.handle import ModelInfo
from analysis.heads import HeadSpecError, parse_heads
from components.head_picker import head_picker
from components.state import bind, update_state

_PENDING_HEAD = "flow_pending_head"


def _clamp(state: dict, field: str, size: int, what: str) -> int:
    """The field's index in 0..size-1 (-1 = the last); an out-of-range link value falls back to the last."""
    value = int(state[field])
    if value >= size:
        st.warning(f"The link's {what} {value} does not exist here (0–{size - 1}); showing the last one.")
        update_state(**{field: -1})
        value = -1
    return value % size


def position_select(state: dict, field: str, label: str, tokens: list[str], help_text: str = "") -> int:
    """A token select box bound to ``field`` (-1 = last token); returns the position."""
    position = _clamp(state, field, len(tokens), "token position")
    bind(st.selectbox, field, label, options=list(range(len(tokens))), index=position,
         format_func=lambda i: f"{i}: {tokens[i]}", help=help_text or None)
    return position


def layer_select(state: dict, field: str, label: str, n_layers: int, help_text: str = "") -> int:
    """A layer select box bound to ``field`` (-1 = last layer); returns the layer."""
    layer = _clamp(state, field, n_layers, "layer")
    bind(st.selectbox, field, label, options=list(range(n_layers)), index=layer,
         format_func=lambda l: f"L{l}", help=help_text or None)
    return layer


def heads_box(state: dict, field: str, info: ModelInfo) -> tuple[tuple[int, int], ...] | None:
    """A text box for heads such as 'L12H3, L14H*'; None (= every head) when empty or unreadable."""
    bind(st.text_input, field, "Only these heads", value=state[field], placeholder="all heads, or e.g. L12H3, L14H*",
         help="Restrict rollout to a circuit: per layer the mean over the listed heads; layers without a listed "
              "head pass only the residual. Zero-based, L14H* = every head of layer 14.")
    spec = str(state[field]).strip()
    if not spec:
        return None
    try:
        heads = parse_heads(spec, info.n_layers, info.n_heads)
    except HeadSpecError as error:
        st.error(f"{error} Showing every head; fix the heads box.")
        return None
    return tuple(heads) or None


def select_head(layer: int, head: int) -> None:
    """Select a head clicked on this page and rerun; ``synced_head_picker`` then shows it.

    The picker's select boxes keep their browser-side value when only the state changes (their identity
    is their key), so the new value is written to their widget keys before they are drawn again.
    """
    update_state(layer=layer, head=head)
    st.session_state[_PENDING_HEAD] = (layer, head)
    st.rerun()


def synced_head_picker(info: ModelInfo, state: dict) -> tuple[int, int]:
    """``head_picker`` that also shows a head chosen with ``select_head`` in the previous run."""
    pending = st.session_state.pop(_PENDING_HEAD, None)
    if pending is not None:  # the widget keys of components.state.bind
        st.session_state["w_layer"], st.session_state["w_head"] = pending
    return head_picker(info, state)
