"""Circuits on SmolLM2-135M and the IOI pair: the identities at full size, the page, the link and the CLI."""
from __future__ import annotations

import json

import numpy as np

from analysis.cli.main import main
from analysis.methods.edge_attribution import edge_scores, exact_edge_values, prepare_edge_runs
from analysis.methods.faithfulness import circuit_values
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
from analysis.methods.patching import PatchingMetric
from analysis.runtime.trace import encode_text
from tests.app_support import messages, run_app

PAGE = "pages/circuits.py"


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_ioi_edges_all_none_and_the_name_mover_into_the_logits(smollm2):
    clean, corrupted = (encode_text(smollm2, text)[0] for text in (IOI_PROMPT, CORRUPTED_IOI_PROMPT))
    runs = prepare_edge_runs(smollm2, clean, corrupted, PatchingMetric())
    table = edge_scores(smollm2, runs, "eap")
    assert len(table) == 70_651 and set(table["input"]) == {"q", "k", "v", ""}
    top = table.loc[table["score"].abs().idxmax()]
    # the head whose output patching finds most important (L23H3) writes the answer straight into the logits
    assert (top["source"], top["target"]) == ("L23H3", "logits") and top["score"] < 0
    everything, nothing = np.ones(len(table), dtype=bool), np.zeros(len(table), dtype=bool)
    assert np.allclose(circuit_values(smollm2, runs, table, [everything, nothing]), [1.0, 0.0], atol=1e-4)


def test_circuit_page_slider_faithfulness_and_link(smollm2):
    app = run_app(PAGE, circuit_edges="100")
    assert not app.exception, app.exception
    metrics = _metrics(app)
    assert metrics["Target / distractor"] == "␣Mary / ␣John"
    kept = int(metrics["Edges after pruning"].split()[0])
    assert 0 < kept <= 100
    assert "KV group" in " ".join(caption.value for caption in app.caption)
    app.slider(key="w_circuit_edges").set_value(400).run()
    assert app.query_params["circuit_edges"] == "400"
    assert int(_metrics(app)["Edges after pruning"].split()[0]) > kept
    app.button(key="circuit_faithfulness").click().run()
    value = float(_metrics(app)["Faithfulness (normalised metric, every other edge ablated)"])
    assert 0.2 < value < 1.2
    edges = app.dataframe[0].value
    assert list(edges.columns) == ["source", "target", "input", "score"] and len(edges) <= 200
    reopened = run_app(PAGE, **{key: app.query_params[key] for key in app.query_params})
    assert reopened.dataframe[0].value.equals(edges)
    bad = run_app(PAGE, compare_text="When Mary and John went to the shop, Mary gave a drink to Bob")
    assert "same token length" in messages(bad) and not bad.exception


def test_path_patching_on_the_page_is_the_exact_edge_patch_and_its_receivers_are_in_the_link(smollm2):
    app = run_app(PAGE, circuit_edges="50", path_receivers="L1H5", path_inputs="v")
    assert not app.exception, app.exception
    app.button(key="circuit_paths").click().run()
    assert not app.exception, app.exception
    assert (app.query_params["path_receivers"], app.query_params["path_inputs"]) == ("L1H5", "v")
    others = app.dataframe[-1].value  # the senders that are not heads: the input and MLP0
    assert set(others["sender"]) == {"input", "MLP0"}
    clean, corrupted = (encode_text(smollm2, text)[0] for text in (IOI_PROMPT, CORRUPTED_IOI_PROMPT))
    runs = prepare_edge_runs(smollm2, clean, corrupted, PatchingMetric())
    table = edge_scores(smollm2, runs, "eap")
    group = f"L1KV{5 // runs.graph.group_size}"  # SmolLM2: grouped-query attention, v belongs to the KV group
    edges = table[(table["target"] == group) & (table["input"] == "v") & table["source"].isin(["input", "MLP0"])]
    exact = runs.baseline.normalise(exact_edge_values(smollm2, runs, edges)) - 1.0
    shown = others.set_index("sender").loc[list(edges["source"]), "effect"].to_numpy()
    assert np.allclose(shown, exact, atol=1e-4)
    bad = run_app(PAGE, path_receivers="L99H0")
    bad.button(key="circuit_paths").click().run()
    assert "layer 99 does not exist" in messages(bad) and not bad.exception


def test_circuit_cli_writes_csv_and_eap_ig_json(smollm2, tmp_path, capsys):
    out, document = tmp_path / "edges.csv", tmp_path / "circuit.json"
    assert main(["circuit", "--edges", "50", "--faithfulness", "--out", str(out), "--json", str(document)]) == 0
    printed = capsys.readouterr().out
    assert "faithfulness (patch):" in printed and "L23H3" in printed
    graph = json.loads(document.read_text())
    assert graph["cfg"]["n_heads"] == 9 and graph["cfg"]["n_kv_heads"] == 3
    kept = [name for name, edge in graph["edges"].items() if edge["in_graph"]]
    assert 0 < len(kept) and "a23.h3->logits" in kept
