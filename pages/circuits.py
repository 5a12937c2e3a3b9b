"""Circuits: which paths between heads and MLPs carry a behaviour — edge scores, the circuit graph, faithfulness."""
import streamlit as st

from analysis.methods.circuit_graph import CircuitError, circuit_heads, circuit_json, circuit_nodes
from analysis.methods.edge_attribution import CIRCUIT_TOKENS
from analysis.methods.metrics import MetricError
from analysis.methods.patching import PatchingError
from analysis.runtime.tokens import display_token
from components.caches.circuits import cached_curve, cached_faithfulness, cached_refinement, \
    cached_paths, chosen_edges, circuit_request, circuit_runs, circuit_table
from components.figures.circuits import circuit_figure, faithfulness_figure
from components.panels.circuit_dataset import dataset_scores_section
from components.page import page_context, require_editable_causal_model, second_trace_or_stop
from components.widgets.circuits import circuit_chart, circuit_controls, lab_button, open_head_view, path_controls, \
    path_grid, show
from components.widgets.patching import patching_controls

REFINED_EDGES = 50

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Circuits")
st.caption("Which paths between heads and MLPs carry a behaviour (Wang et al. 2022, path patching; Conmy et al. "
           "2023, ACDC; Syed et al. 2023, EAP; Hanna et al. 2024, EAP-IG). Every edge — an upstream node's write as "
           "a downstream head's query, key or value or an MLP reads it — is scored by how much patching it from the "
           "corrupted prompt would change the metric; a circuit keeps the top edges, and its faithfulness is the "
           "metric with every other edge ablated: 1 = the clean run, 0 = the corrupted run.")
require_editable_causal_model(info, "circuits are measured on the next-token prediction at the last position, so "
                              "they need a causal language model. Pick one in the sidebar.")
patch = patching_controls(ctx.handle, trace, state, direction=False)
second_trace_or_stop(trace, state, "A circuit needs a clean and a corrupted prompt of the same token length",
                     ("Clean prompt", "Corrupted prompt"))
if trace.n_tokens > CIRCUIT_TOKENS:
    st.info(f"The prompts have {trace.n_tokens} tokens; the circuits page works on prompts of up to "
            f"{CIRCUIT_TOKENS} tokens. Shorten both prompts to the part that carries the behaviour.")
    st.stop()
request = circuit_request(patch)
try:
    runs = circuit_runs(request)
except (PatchingError, MetricError) as error:
    st.error(str(error))
    st.stop()
graph = runs.graph
method, steps, ablation, how, n_edges = circuit_controls(state, graph.n_edges)
if graph.group_size > 1:
    st.caption(f"Grouped-query attention: {info.n_heads} query heads share {info.n_kv_heads} key/value heads, so "
               f"a key or value edge goes into a KV group (L…KV…, {graph.group_size} heads), not into one head.")
dataset = dataset_scores_section(info, state, method, steps)
table = circuit_table(request, method, steps, dataset)
mask = chosen_edges(request, method, steps, how, n_edges, dataset)
scored_by = f"{method}, {how.replace('_', ' ')}" if dataset is None else f"dataset mean, {how.replace('_', ' ')}"
edges = table[mask]
heads = circuit_heads(graph, mask)
target, distractor = (display_token(ctx.handle.tokenizer.decode([token]))
                      for token in (runs.metric.target_id, runs.metric.distractor_id))
numbers = st.columns(4)
numbers[0].metric("Target / distractor", f"{target} / {distractor}")
numbers[1].metric("Metric, clean / corrupted", f"{runs.baseline.clean:.2f} / {runs.baseline.corrupted:.2f}")
numbers[2].metric("Edges after pruning", f"{len(edges)} of {graph.n_edges:,}",
                  help="Edges that lie on a path from the input to the logits inside the circuit.")
numbers[3].metric("Nodes / heads", f"{max(len(circuit_nodes(graph, mask)) - 2, 0)} / {len(heads)}",
                  help="Heads and MLPs in the circuit (the input and the logits not counted).")

node = circuit_chart(circuit_figure(graph, edges, f"{len(edges)} edges ({scored_by})"),
                     "circuit_graph")
if node is not None:
    open_head_view(node)
st.caption("Colour: the input an edge feeds (query, key, value, MLP, logits); dotted: a negative score (patching "
           "the edge from the corrupted prompt lowers the metric: the edge carries the behaviour); width: |score|. "
           "Hover an edge's middle for its score; click a head to open its head view.")
actions = st.columns(3)
with actions[0]:
    lab_button(heads)
actions[1].button("Faithfulness of this circuit", key="circuit_faithfulness", on_click=show,
                  args=("circuit_faithfulness_on",))
actions[2].button("Faithfulness curve (EAP and EAP-IG)", key="circuit_curve", on_click=show, args=("circuit_curve_on",))
if st.session_state.get("circuit_faithfulness_on"):
    value = cached_faithfulness(request, method, steps, how, n_edges, ablation, dataset)
    st.metric("Faithfulness (normalised metric, every other edge ablated)", f"{value:.3f}",
              help="1 = the clean run, 0 = the corrupted run.")
if st.session_state.get("circuit_curve_on"):
    st.plotly_chart(faithfulness_figure(cached_curve(request, int(state["circuit_steps"]), ablation)),
                    key="circuit_curve_figure")
    st.caption("AUC: the area under faithfulness over log10(edges), divided by the log range — the mean "
               "faithfulness across circuit sizes.")

st.subheader("Edges")
ranked = edges.reindex(edges["score"].abs().sort_values(ascending=False, kind="stable").index)
if dataset is None:
    st.dataframe(ranked.head(200), hide_index=True, width="stretch")
else:
    st.dataframe(ranked.head(200)[["source", "target", "input", "score", "ci_half", "n"]].rename(
        columns={"score": "mean score", "ci_half": "± 95 % CI"}), hide_index=True, width="stretch")
    st.caption("Mean score over the dataset's pairs, the half-width of its 95 % interval (Student's t) and the "
               "number of pairs scored.")
meta = {"model": info.name, "clean": state["text"], "corrupted": state["compare_text"], "metric": runs.metric.name,
        "method": method, "steps": steps, "selection": how, "n_edges": n_edges,
        **({} if dataset is None else {"scores": f"mean over the pairs of job {dataset.job_id}"})}
downloads = st.columns(2)
downloads[0].download_button("Circuit edges (CSV)", ranked.to_csv(index=False), file_name="circuit_edges.csv",
                             mime="text/csv")
downloads[1].download_button("Circuit (JSON, EAP-IG's graph format)",
                             circuit_json(graph, table, mask, meta), file_name="circuit.json",
                             mime="application/json",
                             help="cfg, nodes {name: in_graph} and edges {'a0.h1->a2.h3<q>': score, in_graph}, as "
                                  "EAP-IG's Graph.from_json reads them; see the README.")
st.button(f"Refine the top {REFINED_EDGES} edges exactly", key="circuit_refine", on_click=show,
          args=("circuit_refine_on",), help="Patch each edge alone: the downstream input gets the clean stream − the "
                                            "clean write + the corrupted write of the upstream node, everything "
                                            "downstream recomputed.")
if st.session_state.get("circuit_refine_on"):
    refined = cached_refinement(request, method, steps, REFINED_EDGES, dataset)
    st.dataframe(refined, hide_index=True, width="stretch")

st.subheader("Path patching")
st.caption("A sender's effect through chosen receivers only (Wang et al. 2022): the sender's corrupted write reaches "
           "just the receivers' inputs, every other path from it stays clean, and everything downstream of the "
           "receivers is recomputed. Effect: the normalised metric − 1 (−1: the path carries the whole clean − "
           "corrupted gap). In IOI, the name movers' queries as receivers show the S-inhibition heads as senders.")
receivers, inputs = path_controls(state)
if not receivers:
    st.caption("Name the receivers (for example the heads the circuit ends in) to see every sender's path effect.")
else:
    st.button("Run path patching", key="circuit_paths", on_click=show, args=("circuit_paths_on",),
              help="One run per sender, eight senders per call, each starting at the lowest receiver's layer "
                   "(everything below it is the clean run): receivers in a high layer have hundreds of senders "
                   "but few layers to run.")
if receivers and st.session_state.get("circuit_paths_on"):
    try:
        paths = cached_paths(request, receivers, inputs)
    except CircuitError as error:
        st.error(str(error))
    else:
        picked = path_grid(paths, info.n_layers, info.n_heads,
                           f"Path effect into {receivers[:60]} ({inputs}); click a head for its head view")
        if picked is not None:
            open_head_view(f"L{picked[0]}H{picked[1]}")
