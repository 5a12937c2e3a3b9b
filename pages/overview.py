"""Model overview: every layer × head as a thumbnail; click one to open it."""
import streamlit as st

from components.figures.attention import overview_mosaic
from components.widgets.head_picker import head_grid
from components.figures.grids import add_head_click_layer
from components.navigation import page_file
from components.panels.notes import noted_heads
from components.page import page_context
from components.state import bind, update_state
from components.panels.summary import model_summary, text_summary

ctx = page_context()
st.title("Model overview")
model_summary(ctx.handle.info)
left, right = st.columns([5, 2])  # room for the next-token table's probability bars on a 1,024 px screen
with right:
    text_summary(ctx.trace)
with left:
    options = st.columns(2)
    with options[0]:
        bind(st.toggle, "hide_first", "Hide first token (sink)", value=ctx.state["hide_first"],
             help="Most heads park attention on the first token (an attention sink, Xiao et al. 2023); "
                  "hiding it lets the rest of the pattern show.")
    with options[1]:
        bind(st.toggle, "log_color", "Log colour", value=ctx.state["log_color"])
    st.caption("Each thumbnail is one head's attention (query rows × key columns), scaled to its own maximum. "
               "Click a thumbnail to open the head; ✎ marks heads with team notes.")
    thumbnails = ctx.trace.thumbnails_without_sink if ctx.state["hide_first"] else ctx.trace.thumbnails
    figure = overview_mosaic(thumbnails, ctx.state["log_color"],
                             marked=noted_heads(ctx.handle.info.name), selected=(ctx.state["layer"], ctx.state["head"]))
    info = ctx.handle.info
    picked = head_grid(add_head_click_layer(figure, info.n_layers, info.n_heads), key="overview_mosaic")
    if picked is not None:
        update_state(layer=picked[0], head=picked[1])
        st.switch_page(page_file("head"))
