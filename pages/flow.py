"""Attention rollout and flow (Abnar & Zuidema 2020): which input tokens an output token draws on, layer by layer."""
import streamlit as st

from components.figures.attention import head_figure
from components.caches.flow import cached_flow
from components.widgets.flow import heads_box, layer_select, position_select, sink_toggle
from components.figures.flow import contribution_strip, flow_graph
from components.page import page_context
from components.state import bind

MAX_EDGES = 6000  # the strongest edges drawn; more makes the graph unreadable and slow to send
MAP_ROWS = 256  # output tokens in the rollout map (all of them for shorter texts)

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Attention rollout and flow")
st.caption("Rollout (Abnar & Zuidema 2020, *Quantifying Attention Flow in Transformers*): per layer the mean "
           "attention over heads, mixed with the identity for the residual stream (0.5·A + 0.5·I, rows "
           "renormalised), multiplied through the layers. It tracks attention only — it ignores what the heads "
           "and MLPs write — and in causal models it piles up on the first tokens. Excluding the sink does not see "
           "past that: the pile moves to the next early token (on the IOI prompt, with the sink excluded, ␣Mary, "
           "the second token, holds 0.84 of the last token's rollout). Read it as where attention can route "
           "information, not as what a token uses; the flow graph and What a head writes show more.")
tokens = trace.display_tokens
controls = st.columns([2, 1, 2.2, 1.8])
with controls[0]:
    position = position_select(state, "flow_token", "Output token", tokens,
                               "The token whose stream is traced back to the input.")
with controls[1]:
    layer = layer_select(state, "flow_layer", "After layer", info.n_layers, "Rollout up to and including this layer.")
with controls[2]:
    heads = heads_box(state, "flow_heads", info)
with controls[3]:
    exclude_sink = sink_toggle(state, info)

focus = None if state["flow_all_edges"] else position
first_row = max(0, min(position - MAP_ROWS // 2, trace.n_tokens - MAP_ROWS))
rows = (first_row, min(trace.n_tokens, first_row + MAP_ROWS))
flow = cached_flow(state["model"], state["text"], int(state["max_tokens"]), heads, exclude_sink, layer, position,
                   rows, float(state["flow_threshold"]), focus is not None)
scope = "selected heads" if heads else "all heads"
st.plotly_chart(contribution_strip(flow.contributions, tokens, position,
                                   f"Share of each input token in {tokens[position]} ({position}) after L{layer}, "
                                   f"{scope}"), key="flow_strip")
if rows != (0, trace.n_tokens):
    st.caption(f"{trace.n_tokens} tokens: the map shows the rollout of output tokens {rows[0]}–{rows[1] - 1} "
               "(around the chosen one); pick another output token to move it.")
st.plotly_chart(head_figure(flow.rollout_rows, tokens, f"Rollout after L{layer}: output token (row) ← input token "
                            f"(column), {scope}", first_query=rows[0], axis_titles=("input token", "output token")),
                key="flow_map")

st.subheader("Flow graph")
options = st.columns([2, 2, 3])
with options[0]:
    bind(st.toggle, "flow_all_edges", "All attention edges", value=state["flow_all_edges"],
         help="Off: each edge's width is the share of the output token's rollout flowing along it. "
              "On: every mixed attention weight 0.5·A + 0.5·I, whatever token it leads to.")
with options[1]:
    bind(st.number_input, "flow_threshold", "Hide edges below", min_value=0.001, max_value=1.0, step=0.01,
         value=float(state["flow_threshold"]), format="%.3f")
edges = flow.edges
with options[2]:
    st.caption(f"{min(len(edges), MAX_EDGES)} edges drawn, layers 0–{layer}; grey = residual (a token to itself), "
               "blue = attention to another token. Bottom row: input tokens; top row: the streams after the chosen "
               "layer.")
if len(edges) > MAX_EDGES:
    st.warning(f"{len(edges)} edges pass the threshold; only the strongest {MAX_EDGES} are drawn. Raise "
               "'Hide edges below' to see the rest of the structure.")
    edges = edges.head(MAX_EDGES)
st.plotly_chart(flow_graph(edges, tokens, layer + 1, focus, flow.masses if focus is not None else None),
                key="flow_graph")
