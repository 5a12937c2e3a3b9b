"""Head view: one head's attention as a heatmap, or a whole layer side by side."""
import streamlit as st

from components.attention_figures import head_figure, layer_figure
from components.head_picker import head_picker
from components.notes_panel import notes_panel
from components.page import page_context
from components.state import bind

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
if state["side_by_side"]:
    st.plotly_chart(layer_figure(trace.attentions[layer], tokens, layer, state["hide_first"], state["log_color"],
                                 columns=3 if info.n_heads > 4 else 2), key="layer_heads")
else:
    st.plotly_chart(head_figure(trace.attentions[layer, head], tokens, f"L{layer}H{head}: query → key",
                                state["hide_first"], state["log_color"]), key="head_heatmap")
notes_panel(info.name, layer, head)
