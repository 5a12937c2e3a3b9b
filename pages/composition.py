"""Composition: which earlier heads a head reads from through its queries, keys or values (Elhage et al. 2021),
read from the weights — the chosen head's partners, a grid of one kind into it, and the model's strongest pairs."""
import streamlit as st

from analysis.heads import head_label
from analysis.methods.composition import KINDS
from components.caches.weights import cached_composition
from components.figures.grids import add_head_click_layer
from components.figures.weights import composition_graph, composition_grid
from components.navigation import page_file
from components.page import page_context
from components.panels.circuits import COMPOSITION_HELP, partners, weights_available, weight_notes_caption
from components.state import bind, update_state
from components.widgets.head_picker import head_grid, head_picker

ctx = page_context()
info, state = ctx.handle.info, ctx.state
model = info.name
st.title("Composition")
st.caption(COMPOSITION_HELP)
weight_notes_caption(model)
if not weights_available(model):
    st.stop()
layer, head = head_picker(info, state)
label = head_label(layer, head)
bind(st.radio, "comp_kind", "Kind", options=list(KINDS), index=KINDS.index(state["comp_kind"]), horizontal=True,
     help="Q: the later head's queries read the earlier head's output; K: its keys do (induction heads read "
          "previous-token heads this way); V: its values do.")
kind = state["comp_kind"]

st.subheader(f"{label}'s strongest upstream partners")
columns = st.columns(len(KINDS))
for column, each in zip(columns, KINDS):
    rows = partners(model, label, each, upstream=True, k=8)
    column.markdown(f"**{each}-composition**")
    column.dataframe(rows[["source", "score", "baseline"]], hide_index=True, width="stretch")
table = cached_composition(model, kind)
grid = composition_grid(table, info.n_layers, info.n_heads, label, kind)
picked = head_grid(add_head_click_layer(grid, info.n_layers, info.n_heads, marker_size=14), key="composition_grid")
if picked is not None:
    update_state(layer=picked[0], head=picked[1])
    st.switch_page(page_file("head_page"))
st.caption("Click a head to open its head page.")

st.subheader(f"The model's strongest {kind}-composition pairs")
bind(st.number_input, "comp_top", "Pairs shown", min_value=5, max_value=200, value=int(state["comp_top"]))
top = table.nlargest(int(state["comp_top"]), "score")
left, right = st.columns([2, 3])
left.dataframe(top[["source", "target", "score", "baseline"]].assign(ratio=top["score"] / top["baseline"]),
               hide_index=True, width="stretch")
right.plotly_chart(composition_graph(top, info.n_layers, info.n_heads, f"Top {len(top)} {kind}-composition pairs"),
                   key="composition_pairs_graph")
st.download_button("Download all pairs (CSV)", table.to_csv(index=False), file_name=f"composition-{kind}-{model}.csv",
                   mime="text/csv")
