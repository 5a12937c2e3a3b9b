"""Circuit edges over a dataset on the pages (AppTest, a tiny LLaMA that knows the IOI words, the embedded Dask
cluster): the circuits page starts the job, switches its circuit to the dataset's mean scores, and the datasets
page shows the finished job's ranked edges and opens it on the circuits page."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.datasets.generators import ioi_dataset
from analysis.methods.edge_attribution import edge_scores, prepare_edge_runs
from analysis.methods.metrics import resolve_target
from analysis.methods.patching_metric import PatchingMetric
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from tests.app_support import messages, rerun_until, run_app
from tests.jobs_support import tiny_causal_folder

CIRCUITS, DATASETS = "pages/circuits.py", "pages/datasets.py"
PAIRS, SEED = 3, 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return tiny_causal_folder(tmp_path_factory.mktemp("models") / "tiny-ioi-llama")


@pytest.fixture
def tiny_app(tiny_model, job_database, monkeypatch) -> dict:
    """Query parameters opening the circuits page on the tiny model with the first generated pair."""
    monkeypatch.setenv("ATLAS_ALLOWED_MODELS", tiny_model)
    monkeypatch.setenv("ATLAS_DASK_WORKERS", "1")
    pair = ioi_dataset(PAIRS, seed=SEED).pairs[0]
    return {"model": tiny_model, "text": pair.clean, "compare_text": pair.corrupted, "patch_target": pair.target,
            "patch_distractor": pair.distractor, "ds_n": str(PAIRS), "ds_seed": str(SEED)}


def _mean_scores(model: str) -> np.ndarray:
    """The mean EAP score of every edge over the pairs, computed here from ``edge_scores`` pair by pair."""
    handle = load_model(model)
    scores = []
    for pair in ioi_dataset(PAIRS, seed=SEED).pairs:
        clean, corrupted = (encode_text(handle, text)[0] for text in (pair.clean, pair.corrupted))
        metric = PatchingMetric("logit_diff", resolve_target(handle.tokenizer, pair.target)[0],
                                resolve_target(handle.tokenizer, pair.distractor)[0])
        scores.append(edge_scores(handle, prepare_edge_runs(handle, clean, corrupted, metric), "eap")["score"])
    return np.mean(np.stack([s.to_numpy(np.float32) for s in scores]), axis=0)


def _done(app) -> bool:
    return any(getattr(b, "key", None) == "circuit_dataset_new" for b in app.button) or bool(app.error)


@pytest.mark.slow
def test_the_circuits_page_scores_a_dataset_as_a_job_and_chooses_its_circuit_from_the_mean(tiny_app):
    app = run_app(CIRCUITS, **tiny_app, circuit_edges="2000")  # every edge: none pruned, the top one shown first
    assert not app.exception and not messages(app), messages(app)
    pair_table = app.dataframe[0].value
    app.button(key="circuit_dataset_run").click().run()
    job = app.query_params["job"]
    rerun_until(app, _done, timeout=180)
    assert not app.error, messages(app)
    assert f"Job {job}" in app.success[0].value and f"{PAIRS} of {PAIRS} pairs scored" in app.success[0].value

    app.radio(key="w_circuit_scores").set_value("dataset").run()
    assert app.query_params["circuit_scores"] == "dataset" and not app.exception
    assert f"mean edge scores of job {job}" in " ".join(c.value for c in app.caption)
    table = app.dataframe[0].value
    assert list(table.columns) == ["source", "target", "input", "mean score", "± 95 % CI", "n"]
    assert (table["n"] == PAIRS).all() and not table.equals(pair_table)
    means = _mean_scores(tiny_app["model"])
    top = np.argmax(np.abs(means))
    names = prepare_edge_runs(*_first_pair(tiny_app["model"])).graph.edge_names().iloc[top]
    first = table.iloc[0]
    assert (first["source"], first["target"], first["input"]) == tuple(names)
    assert first["mean score"] == pytest.approx(means[top], rel=1e-4, abs=1e-7)
    app.button(key="circuit_faithfulness").click().run()
    assert not app.exception
    assert "Faithfulness (normalised metric, every other edge ablated)" in {m.label for m in app.metric}

    reopened = run_app(CIRCUITS, **{key: app.query_params[key] for key in app.query_params})
    assert reopened.dataframe[0].value.equals(table)  # the link reopens the job and the dataset's circuit

    sweep = run_app(DATASETS, model=tiny_app["model"], job=job)
    assert not sweep.exception and not messages(sweep), messages(sweep)
    ranked = sweep.dataframe[0].value
    assert (ranked.iloc[0]["source"], ranked.iloc[0]["target"]) == tuple(names)[:2]
    assert {"mean", "ci_low", "ci_high", "n"} <= set(ranked.columns)
    sweep.button(key="sweep_open_circuits").click().run()
    assert not sweep.exception
    assert sweep.query_params["circuit_scores"] == "dataset" and sweep.query_params["text"] == tiny_app["text"]
    sweep.switch_page(CIRCUITS).run()  # AppTest does not follow st.switch_page: go there as the browser would
    assert sweep.query_params["job"] == job and not messages(sweep)
    assert "This is the link's job" in " ".join(c.value for c in sweep.caption)  # this session's inputs: 20 pairs
    assert sweep.dataframe[0].value["mean score"].iloc[0] == pytest.approx(means[top], rel=1e-4, abs=1e-7)

    same = run_app(DATASETS, model=tiny_app["model"], ds_n=str(PAIRS), ds_seed=str(SEED), sweep="circuit")
    same.button(key="sweep_start").click().run()
    assert same.query_params["job"] == job  # the datasets page's sweep of the same pairs is the same job


def _first_pair(model: str):
    handle = load_model(model)
    pair = ioi_dataset(PAIRS, seed=SEED).pairs[0]
    return (handle, *(encode_text(handle, text)[0] for text in (pair.clean, pair.corrupted)), PatchingMetric())
