"""Path patching on tiny random models: one receiver input is one exact edge patch, and every path out of a
head together is that head's whole output patched, checked against a plain hook on the model's own output
projection (tests/oracles.py), which shares no code with the node-input streams under test."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import path_patching
from analysis.methods.circuit_graph import CircuitError
from analysis.methods.edge_attribution import exact_edge_values
from analysis.methods.path_patching import receiver_inputs
from analysis.methods.patching_metric import metric_values
from tests.oracles import head_rewritten, model_output
from tests.test_circuits import ATOL, edge_case

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["llama", "gpt_neox", "gemma2"])
def test_one_receiver_input_is_the_exact_patch_of_that_edge(name):
    handle, runs, table = edge_case(name)
    graph = runs.graph
    columns = receiver_inputs(graph, "L1H2", ("q", "k"))  # under grouped-query attention: L1H2's q, L1KV1's k
    key = "L1KV1" if graph.group_size > 1 else "L1H2"
    assert [(graph.inputs[column].target, graph.inputs[column].kind) for column in columns] == [("L1H2", "q"),
                                                                                              (key, "k")]
    for column in columns:
        item = graph.inputs[column]
        paths = path_patching(handle, runs, [column], senders=["input", "L0H1", "MLP0"])
        edges = table[(table["target"] == item.target) & (table["input"] == item.input)
                      & table["source"].isin(["input", "L0H1", "MLP0"])]
        assert list(edges["source"]) == list(paths["sender"])
        exact = runs.baseline.normalise(exact_edge_values(handle, runs, edges))
        assert np.allclose(paths["value"], exact, atol=ATOL)
        assert np.allclose(paths["effect"], paths["value"] - 1.0)


def _hooked_value(handle, runs, layer: int, head: int) -> float:
    """The normalised metric of the clean run with one head's output (o_proj's input) taken from the corrupted run."""
    captured = {}
    with head_rewritten(handle, layer, head, lambda z: captured.setdefault("z", z.clone())):
        model_output(handle, runs.corrupted_ids)
    with head_rewritten(handle, layer, head, lambda z: captured["z"]):
        logits = model_output(handle, runs.clean_ids)
    return float(runs.baseline.normalise(metric_values(logits[:, -1:], runs.metric, runs.clean_log_probs))[0])


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_every_path_out_of_a_head_is_its_whole_output_patched(name):
    handle, runs, _ = edge_case(name)
    graph = runs.graph
    for layer, head in ((0, 1), (0, 3), (1, 0)):
        sender = graph.head_source(layer, head)
        downstream = np.flatnonzero(graph.valid[sender])
        [value] = path_patching(handle, runs, downstream, senders=[f"L{layer}H{head}"])["value"]
        assert value == pytest.approx(_hooked_value(handle, runs, layer, head), abs=ATOL)
    assert abs(value - 1.0) > 10 * ATOL  # the check compares a real change, not two clean runs


def test_default_senders_are_the_nodes_upstream_of_the_receivers_and_bad_requests_say_why():
    handle, runs, _ = edge_case("llama")
    graph = runs.graph
    paths = path_patching(handle, runs, receiver_inputs(graph, "L1H0", ("v",)))
    assert list(paths["sender"]) == ["input", "L0H0", "L0H1", "L0H2", "L0H3", "MLP0"]
    assert list(paths["layer"]) == [-1, 0, 0, 0, 0, 0] and list(paths["head"]) == [-1, 0, 1, 2, 3, -1]
    for receivers, kinds, message in (("L9H0", ("q",), "layer 9 does not exist"), ("L1H0", ("o",), "Unknown input kind"),
                                      ("", ("q",), "at least one receiver"), ("MLP7", ("q",), "layer 7 does not exist")):
        with pytest.raises(CircuitError, match=message):
            receiver_inputs(graph, receivers, kinds)
    with pytest.raises(CircuitError, match="No sender is upstream"):
        path_patching(handle, runs, receiver_inputs(graph, "L1H0"), senders=["L1H1"])  # same layer: no edge
    assert list(path_patching(handle, runs, receiver_inputs(graph, "L0H0"))["sender"]) == ["input"]
    with pytest.raises(CircuitError, match="Unknown sender"):
        path_patching(handle, runs, receiver_inputs(graph, "L1H0"), senders=["L5H5"])
