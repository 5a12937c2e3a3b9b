"""Attention rollout and the flow graph: hand-computed products, identity attention, head restriction, flow shares."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.methods.probes import IOI_PROMPT
from analysis.methods.rollout import flow_edges, flow_masses, mixing_matrices, rollout, token_contributions
from analysis.runtime.trace import run_trace

# two layers, one head, two tokens (causal)
HAND = np.array([[[[1.0, 0.0], [0.5, 0.5]]], [[[1.0, 0.0], [0.2, 0.8]]]])


def test_rollout_of_a_hand_example():
    # layer 0: 0.5·A + 0.5·I = [[1, 0], [0.25, 0.75]]; layer 1: [[1, 0], [0.1, 0.9]]
    # product layer1 · layer0 = [[1, 0], [0.1 + 0.9·0.25, 0.9·0.75]] = [[1, 0], [0.325, 0.675]]
    maps = rollout(HAND)
    np.testing.assert_allclose(maps[0], [[1, 0], [0.25, 0.75]])
    np.testing.assert_allclose(maps[1], [[1, 0], [0.325, 0.675]])
    np.testing.assert_allclose(token_contributions(maps, 1), [0.325, 0.675])


def test_excluding_the_sink_sends_its_mass_to_the_residual():
    # layer 0 row 1 without the sink: 0.5·[0, 0.5] + 0.5·[0, 1] -> [0, 1]; the same for layer 1
    maps = rollout(HAND, exclude_sink=True)
    np.testing.assert_allclose(maps[1], np.eye(2))


def test_identity_attention_gives_the_identity():
    attentions = np.broadcast_to(np.eye(7), (4, 3, 7, 7))
    np.testing.assert_allclose(rollout(attentions), np.broadcast_to(np.eye(7), (4, 7, 7)))


def test_rollout_on_a_tiny_model_is_the_product_of_the_mixed_layers(tiny_llama_handle):
    attentions = run_trace(tiny_llama_handle, "the cat sat on the mat").attentions
    expected = np.eye(attentions.shape[-1])
    for layer in attentions:
        mixed = 0.5 * layer.mean(0) + 0.5 * np.eye(layer.shape[-1])
        expected = (mixed / mixed.sum(1, keepdims=True)) @ expected
    maps = rollout(attentions)
    np.testing.assert_allclose(maps[-1], expected, rtol=1e-6)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-6)
    assert np.allclose(np.triu(maps[-1], 1), 0)  # causal: nothing flows from later tokens


def test_selected_heads_only(tiny_llama_handle):
    attentions = run_trace(tiny_llama_handle, "the cat sat").attentions
    np.testing.assert_allclose(rollout(attentions, [(l, h) for l in range(2) for h in range(4)]), rollout(attentions))
    only = rollout(attentions, [(0, 1)])
    mixed = 0.5 * attentions[0, 1] + 0.5 * np.eye(attentions.shape[-1])
    np.testing.assert_allclose(only[0], mixed, rtol=1e-6)
    np.testing.assert_allclose(only[1], only[0])  # layer 1 has no selected head: only the residual


def test_flow_edges_split_the_output_tokens_rollout(smollm2):
    attentions = run_trace(smollm2, IOI_PROMPT).attentions
    mixed = mixing_matrices(attentions)
    position = attentions.shape[-1] - 1
    masses = flow_masses(mixed, position)
    np.testing.assert_allclose(masses[0], rollout(attentions)[-1, position], rtol=1e-9)
    edges = flow_edges(mixed, threshold=1e-12, position=position)
    per_layer = edges.groupby("layer")["weight"].sum()
    np.testing.assert_allclose(per_layer.to_numpy(), 1.0, rtol=1e-9)
    assert len(per_layer) == 30
    strong = flow_edges(mixed, threshold=0.05, position=position)
    assert 0 < len(strong) < len(edges) and strong["weight"].is_monotonic_decreasing
    assert (strong["source"] <= strong["target"]).all()  # causal


def test_all_edges_are_the_mixed_attention(tiny_llama_handle):
    attentions = run_trace(tiny_llama_handle, "the cat").attentions
    mixed = mixing_matrices(attentions)
    edges = flow_edges(mixed, threshold=0.3)
    assert (edges["weight"] >= 0.3).all()
    for edge in edges.itertuples():
        assert mixed[edge.layer, edge.target, edge.source] == pytest.approx(edge.weight)
    assert edges["residual"].any()  # every diagonal is at least 0.5
