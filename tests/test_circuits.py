"""Edge attribution and circuits on a tiny random model of every causal family: identities and a hook oracle.

Identities (Hanna et al. 2024; Conmy et al. 2023): with every edge in the circuit the run is the clean run (1),
with none it is the corrupted run (0); ablating every edge into one input equals patching that input's whole
stream; an EAP score is the derivative of the exact edge patch (a central finite difference); EAP-IG with one
step is EAP; the batched restart equals one full forward per edge. The oracle is independent of the runtime:
plain hooks on the model's own modules (tests only) give the downstream input the clean stream plus the
upstream node's corrupted − clean write, which is read off the model's own modules too.
"""
from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from analysis.methods.circuit_graph import CircuitGraph, circuit_heads, circuit_json, circuit_nodes, greedy, prune, \
    select, top_n
from analysis.methods.edge_attribution import edge_scores, exact_edge_values, integrated_gradients, \
    prepare_edge_runs, score_matrix
from analysis.methods.faithfulness import circuit_values, curve_auc, faithfulness_curve
from analysis.methods.patching_metric import PatchingMetric, metric_values
from analysis.runtime.node_inputs import EdgePatch, edge_patched_logits
from tests.oracles import model_output
from tests.test_patching import CAUSAL, family_case

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4  # raw metric on tiny models (float32)
_RUNS: dict = {}


def edge_case(name: str):
    """(handle, runs, EAP table) of a family, computed once."""
    if name not in _RUNS:
        handle, clean, corrupted = family_case(name)
        runs = prepare_edge_runs(handle, clean, corrupted, PatchingMetric())
        _RUNS[name] = (handle, runs, edge_scores(handle, runs, "eap"))
    return _RUNS[name]


def test_graph_counts_edges_and_respects_parallel_residual_and_grouped_query_attention():
    sequential, parallel = CircuitGraph(2, 4, 2, False), CircuitGraph(2, 4, 2, True)
    # per layer 4 q + 2 k + 2 v inputs read every earlier source; the MLP also reads its own layer's heads
    # unless the residual is parallel; the logits read all 11 sources
    assert sequential.n_edges == 8 * 1 + (1 + 4) + 8 * 6 + (6 + 4) + 11 == 82
    assert parallel.n_edges == 82 - 8
    targets = {item.target for item in sequential.inputs if item.kind == "k"}
    assert targets == {"L0KV0", "L0KV1", "L1KV0", "L1KV1"}
    assert {item.target for item in CircuitGraph(1, 2, 2).inputs if item.kind == "v"} == {"L0H0", "L0H1"}
    table = sequential.edge_table(np.zeros(sequential.valid.shape))
    assert not ((table["source"] == "L0H1") & (table["target"] == "L0H2")).any()  # no edges within a layer
    assert ((table["source"] == "L0H1") & (table["target"] == "MLP0")).sum() == 1
    assert not ((parallel.edge_table(np.zeros(parallel.valid.shape))["source"] == "L0H1")
                & (parallel.edge_table(np.zeros(parallel.valid.shape))["target"] == "MLP0")).any()


def test_selection_prunes_to_paths_from_input_to_logits():
    graph = CircuitGraph(2, 2, 2)
    table = graph.edge_table(np.zeros(graph.valid.shape))
    scores = np.zeros(len(table))
    key = lambda source, target, kind="": ((table["source"] == source) & (table["target"] == target)  # noqa: E731
                                           & (table["input"] == kind)).to_numpy()
    scores[key("input", "L1H0", "q")] = 5.0
    scores[key("L1H0", "logits")] = 4.0
    scores[key("L0H1", "logits")] = 3.0  # L0H1 reads nothing in the circuit: pruned
    scores[key("input", "MLP1")] = 2.0  # MLP1 reaches no logits: pruned
    chosen = select(graph, scores, "top_n", 4)
    kept = table[chosen][["source", "target", "input"]]
    assert set(kept.itertuples(index=False, name=None)) == {("input", "L1H0", "q"), ("L1H0", "logits", "")}
    assert circuit_nodes(graph, chosen) == ["input", "L1H0", "logits"] and circuit_heads(graph, chosen) == [(1, 0)]
    assert not prune(graph, top_n(scores, 0)).any()
    assert greedy(graph, scores, 2).sum() == 2 and greedy(graph, scores, 2)[key("L1H0", "logits")].all()
    table["score"] = scores
    document = json.loads(circuit_json(graph, table, chosen, all_edges=True))
    assert document["edges"]["input->a1.h0<q>"]["score"] == 5.0 and document["edges"]["input->a1.h0<q>"]["in_graph"]
    assert len(document["edges"]) == graph.n_edges and document["nodes"]["a1.h0"] == {"in_graph": True}
    assert list(json.loads(circuit_json(graph, table, chosen))["edges"]) == ["input->a1.h0<q>", "a1.h0->logits"]


@pytest.mark.parametrize("name", CAUSAL)
def test_all_edges_give_the_clean_run_and_none_the_corrupted_run(name):
    handle, runs, table = edge_case(name)
    everything, nothing = np.ones(len(table), dtype=bool), np.zeros(len(table), dtype=bool)
    assert np.allclose(circuit_values(handle, runs, table, [everything, nothing]), [1.0, 0.0], atol=1e-4)


def _input_stream(runs, item, which):
    """The stream entering ``item`` (a NodeInput) in the clean or corrupted run."""
    run = runs.clean if which == "clean" else runs.corrupted
    if item.kind == "logits":
        return run.resid_pre[-1]
    if item.kind == "mlp":
        return run.resid_pre[item.layer] + (0 if runs.graph.parallel_mlp else run.attn_out[item.layer])
    return run.resid_pre[item.layer]


@pytest.mark.parametrize("name", CAUSAL)
def test_ablating_every_edge_into_one_input_patches_that_whole_input(name):
    handle, runs, table = edge_case(name)
    graph = runs.graph
    sources, inputs = graph.edge_index
    chosen = [index for index, item in enumerate(graph.inputs)
              if item.layer == graph.n_layers - 1 and item.kind in ("q", "k", "mlp")][::2] + [len(graph.inputs) - 1]
    masks = [inputs != column for column in chosen]
    patches = []
    for column in chosen:
        item = graph.inputs[column]
        head = item.heads[0] if item.kind == "q" else item.heads[0] // graph.group_size if item.heads else -1
        delta = _input_stream(runs, item, "corrupted") - _input_stream(runs, item, "clean")
        patches.append(EdgePatch(item.layer, item.kind, head, delta))
    whole = runs.baseline.normalise(runs.values(edge_patched_logits(handle, runs.clean, runs.clean_ids, patches)
                                                ).numpy())
    assert np.allclose(circuit_values(handle, runs, table, masks), whole, atol=ATOL)


def _top_edges(table, n=12):
    return table.loc[table["score"].abs().sort_values(ascending=False, kind="stable").index[:n]]


@pytest.mark.parametrize("name", CAUSAL)
def test_eap_is_the_derivative_of_the_exact_edge_patch_and_the_restart_equals_full_forwards(name):
    handle, runs, table = edge_case(name)
    top = _top_edges(table)
    epsilon = 1e-2
    slope = (exact_edge_values(handle, runs, top, scale=epsilon)
             - exact_edge_values(handle, runs, top, scale=-epsilon)) / (2 * epsilon)
    assert np.allclose(slope, top["score"], atol=2e-3 * max(1.0, top["score"].abs().max()))
    assert np.allclose(exact_edge_values(handle, runs, top), exact_edge_values(handle, runs, top, restart=False),
                       atol=ATOL)


@pytest.mark.parametrize("name", ["llama", "gemma3"])
def test_eap_ig_with_one_step_is_eap_and_more_steps_differ(name):
    handle, runs, table = edge_case(name)
    assert np.allclose(score_matrix(runs, integrated_gradients(handle, runs, 1))[runs.graph.edge_index],
                       table["score"], atol=1e-6)
    assert not np.allclose(edge_scores(handle, runs, "eap-ig", steps=3)["score"], table["score"], atol=1e-4)


def _write_oracles(handle, ids):
    """Clean-run hidden states and every head's write (read off o_proj's input) on the model's own forward."""
    layers = handle.parts.layers
    info = handle.info
    z = {}
    hooks = [layer.self_attn.o_proj.register_forward_pre_hook(
        lambda module, args, index=index: z.__setitem__(index, args[0].detach())) for index, layer in
        enumerate(layers)]
    try:
        with torch.inference_mode():
            hidden = handle.model(ids, output_hidden_states=True, use_cache=False).hidden_states
    finally:
        for hook in hooks:
            hook.remove()
    writes = {}
    for layer_index, layer in enumerate(layers):
        weight = layer.self_attn.o_proj.weight
        for head in range(info.n_heads):
            columns = slice(head * info.head_dim, (head + 1) * info.head_dim)
            writes[f"L{layer_index}H{head}"] = z[layer_index][0, :, columns] @ weight[:, columns].T
    writes["input"] = hidden[0][0]
    return hidden, writes


@contextmanager
def _patched_input(handle, hidden, layer: int, kind: str, head: int, delta: torch.Tensor):
    """Plain hooks: the downstream input reads the clean stream plus ``delta``, nothing else changes."""
    info = handle.info
    if kind == "logits":
        module = handle.parts.final_norm
        hook = module.register_forward_hook(lambda m, args, out: m.forward(args[0] + delta))
    elif kind == "mlp":
        module = handle.parts.layers[layer].post_attention_layernorm
        hook = module.register_forward_hook(lambda m, args, out: m.forward(args[0] + delta))
    else:
        block = handle.parts.layers[layer]
        projection = getattr(block.self_attn, f"{kind}_proj")
        columns = slice(head * info.head_dim, (head + 1) * info.head_dim)
        own = projection(block.input_layernorm(hidden[layer] + delta))[..., columns].detach()

        def replace(module, args, out):
            out = out.clone()
            out[..., columns] = own
            return out
        hook = projection.register_forward_hook(replace)
    try:
        yield
    finally:
        hook.remove()


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "mistral"])
def test_exact_edge_patch_equals_a_hook_oracle(name):
    handle, runs, table = edge_case(name)
    graph = runs.graph
    clean_hidden, clean_writes = _write_oracles(handle, runs.clean_ids)
    _, corrupted_writes = _write_oracles(handle, runs.corrupted_ids)
    edges = table[table["source"].isin(["input", "L0H1", "L0H3"])
                  & table["target"].isin(["L1H2", "L1KV1", "L1H0", "MLP0", "MLP1", "logits"])]
    assert set(edges["input"]) == {"q", "k", "v", ""} and len(edges) >= 12
    exact = exact_edge_values(handle, runs, edges)
    by_target = {(item.target, item.input): item for item in graph.inputs}
    for row, value in zip(edges.itertuples(index=False), exact):
        item = by_target[(row.target, row.input)]
        head = item.heads[0] if item.kind == "q" else item.heads[0] // graph.group_size if item.heads else -1
        delta = corrupted_writes[row.source] - clean_writes[row.source]
        with torch.no_grad(), _patched_input(handle, clean_hidden, item.layer, item.kind, head, delta):
            logits = model_output(handle, runs.clean_ids)
        oracle = float(metric_values(logits[:, -1:], runs.metric, runs.clean_log_probs)[0])
        assert value == pytest.approx(oracle, abs=ATOL), row


def test_faithfulness_curve_ends_at_the_clean_run_and_its_auc_is_a_mean():
    handle, runs, table = edge_case("llama")
    curve = faithfulness_curve(handle, runs, {"EAP": table}, sizes=[1, 5, len(table)])
    assert list(curve["n_edges"]) == [1, 5, len(table)]
    assert curve["faithfulness"].iloc[-1] == pytest.approx(1.0, abs=1e-4)
    assert (curve["kept"] <= curve["n_edges"]).all()
    assert curve_auc(np.array([1, 10, 100]), np.array([0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert curve_auc(np.array([1, 10, 100]), np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
