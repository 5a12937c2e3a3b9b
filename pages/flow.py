"""Attention rollout and flow (Abnar & Zuidema 2020): which input tokens an output token draws on, layer by layer."""
import streamlit as st

from analysis.methods.rollout import flow_edges, flow_masses
from components.attention_figures import head_figure
from components.flow_cache import cached_rollout
from components.flow_controls import heads_box, layer_select, position_select
from components.flow_figures import contribution_strip, flow_graph
from components.page import page_context
from components.state import bind

MAX_EDGES = 6000  # the strongest edges drawn; more makes the graph unreadable and slow to send

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Attention rollout and flow")
st.caption("Rollout (Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers*): per layer the mean "
           "attention over heads, mixed with the identity for the residual stream (0.5·A + 0.5·I, rows "
           "renormalised), multiplied through the layers. It tracks attention only — it ignores what the heads "
           "and MLPs write — and in causal models it piles up on the first tokens; exclude the sink to see past it.")
tokens = trace.display_tokens
controls = st.columns([2, 1, 3, 1])
with controls[0]:
    position = position_select(state, "flow_token", "Output token", tokens,
                               "The token whose stream is traced back to the input.")
with controls[1]:
    layer = layer_select(state, "flow_layer", "After layer", info.n_layers, "Rollout up to and including this layer.")
with controls[2]:
    heads = heads_box(state, "flow_heads", info)
with controls[3]:
    bind(st.toggle, "flow_sink", "Exclude sink", value=state["flow_sink"],
         help="Treat attention to the first token as a no-op: it is removed (not redistributed), so that mass "
              "stays in the residual.")

mixed, maps = cached_rollout(state["model"], state["text"], int(state["max_tokens"]), heads, state["flow_sink"])
scope = "selected heads" if heads else "all heads"
st.plotly_chart(contribution_strip(maps[layer, position], tokens, position,
                                   f"Share of each input token in {tokens[position]} ({position}) after L{layer}, "
                                   f"{scope}"), key="flow_strip")
st.plotly_chart(head_figure(maps[layer], tokens, f"Rollout after L{layer}: output token (row) ← input token "
                            f"(column), {scope}"), key="flow_map")

st.subheader("Flow graph")
options = st.columns([2, 2, 3])
with options[0]:
    bind(st.toggle, "flow_all_edges", "All attention edges", value=state["flow_all_edges"],
         help="Off: each edge's width is the share of the output token's rollout flowing along it. "
              "On: every mixed attention weight 0.5·A + 0.5·I, whatever token it leads to.")
with options[1]:
    bind(st.number_input, "flow_threshold", "Hide edges below", min_value=0.001, max_value=1.0, step=0.01,
         value=float(state["flow_threshold"]), format="%.3f")
focus = None if state["flow_all_edges"] else position
edges = flow_edges(mixed, float(state["flow_threshold"]), focus)
masses = flow_masses(mixed, position) if focus is not None else None
with options[2]:
    st.caption(f"{min(len(edges), MAX_EDGES)} edges drawn; grey = residual (a token to itself), blue = attention "
               "to another token. Bottom row: input tokens; top row: the output streams.")
if len(edges) > MAX_EDGES:
    st.warning(f"{len(edges)} edges pass the threshold; only the strongest {MAX_EDGES} are drawn. Raise "
               "'Hide edges below' to see the rest of the structure.")
    edges = edges.head(MAX_EDGES)
st.plotly_chart(flow_graph(edges, tokens, info.n_layers, focus, masses), key="flow_graph")
