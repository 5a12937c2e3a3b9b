"""Attention rollout and the flow graph: hand-computed products, identity attention, head restriction, flow shares."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.datasets.probes import IOI_PROMPT
from analysis.methods.rollout import array_flow, layer_mixing, rollout, trace_flow
from analysis.runtime.trace import run_trace
from tests.oracles import stacked_patterns

# two layers, one head, two tokens (causal)
HAND = np.array([[[[1.0, 0.0], [0.5, 0.5]]], [[[1.0, 0.0], [0.2, 0.8]]]])


def test_rollout_of_a_hand_example():
    # layer 0: 0.5·A + 0.5·I = [[1, 0], [0.25, 0.75]]; layer 1: [[1, 0], [0.1, 0.9]]
    # product layer1 · layer0 = [[1, 0], [0.1 + 0.9·0.25, 0.9·0.75]] = [[1, 0], [0.325, 0.675]]
    maps = rollout(HAND)
    np.testing.assert_allclose(maps[0], [[1, 0], [0.25, 0.75]])
    np.testing.assert_allclose(maps[1], [[1, 0], [0.325, 0.675]])
    np.testing.assert_allclose(array_flow(HAND, 1, 1).contributions, [0.325, 0.675])


def test_excluding_the_sink_sends_its_mass_to_the_residual():
    # layer 0 row 1 without the sink: 0.5·[0, 0.5] + 0.5·[0, 1] -> [0, 1]; the same for layer 1
    maps = rollout(HAND, exclude_sink=True)
    np.testing.assert_allclose(maps[1], np.eye(2))


def test_identity_attention_gives_the_identity():
    attentions = np.broadcast_to(np.eye(7), (4, 3, 7, 7))
    np.testing.assert_allclose(rollout(attentions), np.broadcast_to(np.eye(7), (4, 7, 7)))


def test_rollout_on_a_tiny_model_is_the_product_of_the_mixed_layers(tiny_llama_handle):
    attentions = stacked_patterns(run_trace(tiny_llama_handle, "the cat sat on the mat"))
    expected = np.eye(attentions.shape[-1])
    for layer in attentions:
        mixed = 0.5 * layer.mean(0) + 0.5 * np.eye(layer.shape[-1])
        expected = (mixed / mixed.sum(1, keepdims=True)) @ expected
    maps = rollout(attentions)
    np.testing.assert_allclose(maps[-1], expected, rtol=1e-6)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-6)
    assert np.allclose(np.triu(maps[-1], 1), 0)  # causal: nothing flows from later tokens


def test_selected_heads_only(tiny_llama_handle):
    attentions = stacked_patterns(run_trace(tiny_llama_handle, "the cat sat"))
    np.testing.assert_allclose(rollout(attentions, [(l, h) for l in range(2) for h in range(4)]), rollout(attentions))
    only = rollout(attentions, [(0, 1)])
    mixed = 0.5 * attentions[0, 1] + 0.5 * np.eye(attentions.shape[-1])
    np.testing.assert_allclose(only[0], mixed, rtol=1e-6)
    np.testing.assert_allclose(only[1], only[0])  # layer 1 has no selected head: only the residual


def test_flow_edges_split_the_output_tokens_rollout(smollm2):
    trace = run_trace(smollm2, IOI_PROMPT)
    attentions = stacked_patterns(trace)
    position = attentions.shape[-1] - 1
    flow = array_flow(attentions, 29, position, threshold=1e-12)
    np.testing.assert_allclose(flow.contributions, rollout(attentions)[-1, position], rtol=1e-9)
    np.testing.assert_allclose(flow.rollout_rows, rollout(attentions)[-1], rtol=1e-9)
    per_layer = flow.edges.groupby("layer")["weight"].sum()
    np.testing.assert_allclose(per_layer.to_numpy(), 1.0, rtol=1e-9)
    assert len(per_layer) == 30
    strong = array_flow(attentions, 29, position, threshold=0.05).edges
    assert 0 < len(strong) < len(flow.edges) and strong["weight"].is_monotonic_decreasing
    assert (strong["source"] <= strong["target"]).all()  # causal
    streamed = trace_flow(trace.layer_patterns, 9, 29, position, [3, position], threshold=0.05)
    np.testing.assert_allclose(streamed.rollout_rows, rollout(attentions)[-1, [3, position]], rtol=1e-6)
    np.testing.assert_allclose(streamed.edges["weight"], strong["weight"], rtol=1e-6)


def test_flow_stops_at_the_chosen_layer(tiny_llama_handle):
    attentions = stacked_patterns(run_trace(tiny_llama_handle, "the cat sat on the mat"))
    flow = array_flow(attentions, 0, 2, threshold=1e-12)
    assert set(flow.edges["layer"]) == {0} and flow.masses.shape == (2, attentions.shape[-1])
    np.testing.assert_allclose(flow.rollout_rows, rollout(attentions)[0], rtol=1e-9)


def test_all_edges_are_the_mixed_attention(tiny_llama_handle):
    attentions = stacked_patterns(run_trace(tiny_llama_handle, "the cat"))
    edges = array_flow(attentions, 1, 0, threshold=0.3, focus=False).edges
    assert (edges["weight"] >= 0.3).all()
    mask = np.ones(attentions.shape[1], dtype=bool)
    for edge in edges.itertuples():
        mixed = layer_mixing(attentions[edge.layer], mask)
        assert mixed[edge.target, edge.source] == pytest.approx(edge.weight)
    assert edges["residual"].any()  # every diagonal is at least 0.5
