"""Head view: one head's attention as a heatmap (long texts: block means plus a full-resolution window), or a
whole layer side by side."""
import streamlit as st

from components.figures.attention import head_figure, layer_figure, pooled_head_figure
from components.figures.qk import add_cell_click_layer
from components.caches.models import cached_layer_patterns, cached_pattern
from components.panels.qk_breakdown import qk_breakdown_panel
from components.widgets.head_picker import clicked_point, head_picker
from components.panels.notes import notes_panel
from components.page import page_context
from components.state import bind, update_state

FULL_VIEW_TOKENS = 256  # up to this length the whole pattern is drawn cell by cell
WINDOW = 160  # rows and columns of the full-resolution window on longer texts
POOLED_CELLS = 192  # blocks per side of the whole-pattern view on longer texts

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Head view")
layer, head = head_picker(info, state)
options = st.columns(3)
with options[0]:
    bind(st.toggle, "hide_first", "Hide first token (sink)", value=state["hide_first"],
         help="The first token often takes most of the weight (attention sink) and flattens the colour scale. "
              "Hiding blanks its column; rows are not renormalised.")
with options[1]:
    bind(st.toggle, "log_color", "Log colour", value=state["log_color"],
         help="Colour by log10 of the weight (floor 1e-4), to see small weights.")
with options[2]:
    bind(st.toggle, "side_by_side", "All heads of the layer", value=state["side_by_side"])
tokens = trace.display_tokens
source = (state["model"], state["text"], int(state["max_tokens"]))
n_tokens = trace.n_tokens


def clickable_head_figure(figure, key: str, first_query: int = 0, first_key: int = 0) -> None:
    """Draw a head figure whose cells can be clicked; a click selects the cell the QK breakdown explains."""
    point = clicked_point(add_cell_click_layer(figure, first_query, first_key), key)
    if point is not None and point.get("customdata") is not None:
        query, key_position = (int(value) for value in point["customdata"][:2])
        update_state(qk_query=query, qk_key=key_position)
        st.rerun()


def window_start(field: str, default: int) -> int:
    """The window's first row or column from the state (-1 = default), kept inside the text."""
    value = state[field] if state[field] >= 0 else default
    return max(0, min(int(value), n_tokens - WINDOW))


if state["side_by_side"]:
    if n_tokens > 96:
        st.caption(f"{n_tokens} tokens: each panel shows block means over about {-(-n_tokens // 96)} tokens a side; "
                   "untick 'All heads of the layer' for one head at full resolution.")
    st.plotly_chart(layer_figure(cached_layer_patterns(*source, layer), tokens, layer, state["hide_first"],
                                 state["log_color"], columns=3 if info.n_heads > 4 else 2, selected=head),
                    key="layer_heads")
elif n_tokens <= FULL_VIEW_TOKENS:
    clickable_head_figure(head_figure(cached_pattern(*source, layer, head), tokens, f"L{layer}H{head}: query → key",
                                      state["hide_first"], state["log_color"]), "head_heatmap")
else:
    pattern = cached_pattern(*source, layer, head)
    first_query = window_start("zoom_query", n_tokens - WINDOW)
    first_key = window_start("zoom_key", first_query)
    st.caption(f"{n_tokens} tokens: the whole pattern as block means (left), and a {WINDOW} × {WINDOW} window at "
               "full resolution (right, outlined in red on the left). Move the window with the two fields.")
    zoom = st.columns(2)
    with zoom[0]:
        bind(st.number_input, "zoom_query", "Window: first query row", min_value=0, max_value=n_tokens - WINDOW,
             value=first_query, step=WINDOW // 2, derived=state["zoom_query"] < 0,
             help="Rows (queries) of the full-resolution window.")
    with zoom[1]:
        bind(st.number_input, "zoom_key", "Window: first key column", min_value=0, max_value=n_tokens - WINDOW,
             value=first_key, step=WINDOW // 2, derived=state["zoom_key"] < 0,
             help="Columns (keys) of the window; the same as the first row puts the diagonal in view.")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(pooled_head_figure(pattern, tokens, f"L{layer}H{head}: all {n_tokens} tokens (block means)",
                                           POOLED_CELLS, state["hide_first"], state["log_color"],
                                           window=(first_query, first_key, WINDOW)), key="head_pooled")
    with right:
        window = pattern[first_query:first_query + WINDOW, first_key:first_key + WINDOW]
        clickable_head_figure(head_figure(window, tokens, f"L{layer}H{head}: queries {first_query}–"
                                          f"{first_query + WINDOW - 1} → keys {first_key}–{first_key + WINDOW - 1}",
                                          state["hide_first"], state["log_color"], first_query, first_key),
                              "head_heatmap", first_query, first_key)
if info.causal and not state["side_by_side"]:
    qk_breakdown_panel(state, info, tokens, cached_pattern(*source, layer, head))
notes_panel(info.name, layer, head)
