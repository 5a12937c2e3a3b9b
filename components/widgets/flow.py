"""Widgets shared by the token-view, flow, head-writes and compare pages: a token position, a layer, a heads
box, the sink switch, and selecting a head clicked further down the same page.

Each is bound to a URL field. A value that does not fit this model or text (from a link, or left over from
a longer text) is replaced by the default, and a message next to the picker says so.
"""
from __future__ import annotations

import streamlit as st

from analysis.runtime.handle import ModelInfo
from analysis.heads import HeadSpecError, parse_heads
from components.state import bind, update_state


def _clamp(state: dict, field: str, size: int, what: str) -> int:
    """The field's index in 0..size-1 (-1 = the last); a value past the end falls back to the last, visibly."""
    value = int(state[field])
    if value >= size:
        st.warning(f"The {what} {value} does not exist here (0–{size - 1}); showing the last one.")
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


def sink_toggle(state: dict, info: ModelInfo) -> bool:
    """The "Exclude sink" switch; unless the link says otherwise it is on for causal models, whose rollout
    otherwise piles up on the first token. Returns whether the sink is excluded."""
    exclude = info.causal if state["flow_sink"] is None else bool(state["flow_sink"])
    bind(st.toggle, "flow_sink", "Exclude sink", value=exclude,
         help="Treat attention to the first token as a no-op: it is removed (not redistributed), so that mass "
              "stays in the residual. On by default for causal models, where most heads park attention there.")
    return exclude


def select_head(layer: int, head: int) -> None:
    """Select a head clicked on this page and rerun; the head picker then shows it."""
    update_state(layer=layer, head=head)
    st.rerun()
