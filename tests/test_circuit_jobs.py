"""Circuit edge scores over a dataset: the job kind per pair, the per-edge summary, compact storage and the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.datasets import Dataset, PairRow
from analysis.datasets.generators import ioi_dataset
from analysis.jobs.kinds import KINDS, compute_rows
from analysis.jobs.records import JobStore, bytes_frame, frame_bytes
from analysis.methods.aggregate import edge_summary, named_edge_summary, t_quantile
from analysis.methods.edge_attribution import CIRCUIT_TOKENS, edge_scores, prepare_edge_runs
from analysis.methods.patching_metric import PatchingMetric
from analysis.methods.metrics import resolve_target
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from analysis.share_store import ShareStore
from tests.jobs_support import tiny_causal_folder

OPTIONS = {"method": "eap-ig", "steps": 3, "metric": "logit_diff"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    return load_model(tiny_causal_folder(tmp_path_factory.mktemp("models") / "tiny-ioi-llama"))


def _direct(handle, pair: PairRow, method: str, steps: int) -> np.ndarray:
    """The edge scores of one pair straight from ``edge_scores``."""
    clean, corrupted = (encode_text(handle, text)[0] for text in (pair.clean, pair.corrupted))
    metric = PatchingMetric("logit_diff", resolve_target(handle.tokenizer, pair.target)[0],
                            resolve_target(handle.tokenizer, pair.distractor)[0])
    return edge_scores(handle, prepare_edge_runs(handle, clean, corrupted, metric), method, steps)["score"].to_numpy()


def test_the_job_scores_every_edge_of_each_pair_and_the_summary_is_the_mean(tiny):
    dataset = ioi_dataset(3, seed=4)
    steps = []
    rows, errors = compute_rows(tiny, KINDS["circuit"], list(enumerate(dataset.rows())), OPTIONS, 64,
                                lambda row, done, total: steps.append((row, done, total)))
    assert errors == [] and list(rows.columns) == ["row", "edge", "score"]
    direct = np.stack([_direct(tiny, pair, "eap-ig", 3) for pair in dataset.pairs])
    n_edges = direct.shape[1]
    assert len(rows) == 3 * n_edges and (rows.groupby("row")["edge"].apply(list) == [list(range(n_edges))] * 3).all()
    np.testing.assert_allclose(rows["score"].to_numpy().reshape(3, n_edges), direct, rtol=1e-5, atol=1e-6)
    assert (0, 3, 3) in steps and (2, 2, 3) in steps  # progress inside a row counts the integration points

    summary = edge_summary(rows)
    np.testing.assert_allclose(summary["mean"], direct.astype(np.float32).mean(0), rtol=1e-5, atol=1e-7)
    half = t_quantile(0.975, 2) * direct.astype(np.float32).std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(summary["ci_half"], half, rtol=1e-4, atol=1e-8)
    assert (summary["n"] == 3).all()

    graph = prepare_edge_runs(tiny, *(encode_text(tiny, t)[0] for t in (dataset.pairs[0].clean,
                                                                         dataset.pairs[0].corrupted)),
                              PatchingMetric()).graph
    named = named_edge_summary(graph, rows)
    pd.testing.assert_frame_equal(named[["source", "target", "input"]], graph.edge_names())
    np.testing.assert_allclose(named["score"], summary["mean"])
    with pytest.raises(ValueError, match="not of this model's graph"):
        named_edge_summary(graph, rows.assign(edge=rows["edge"] + 1))


def test_eap_is_one_gradient_per_pair(tiny):
    pair = ioi_dataset(1, seed=1).pairs[0]
    rows, _ = compute_rows(tiny, KINDS["circuit"], [(0, pair.__dict__)], {"method": "eap", "metric": "logit_diff"},
                           64)
    np.testing.assert_allclose(rows["score"], _direct(tiny, pair, "eap", 1), rtol=1e-5, atol=1e-6)


def test_a_pair_of_two_lengths_or_too_long_is_a_row_error_and_the_others_go_on(tiny):
    good = ioi_dataset(2, seed=0).pairs
    long_text = " ".join(["mary"] * (CIRCUIT_TOKENS + 5))
    rows = [(0, good[0].__dict__),
            (1, {"clean": good[1].clean, "corrupted": good[1].clean + " mary", "target": " mary",
                 "distractor": " john"}),
            (2, {"clean": long_text, "corrupted": long_text, "target": " mary", "distractor": " john"}),
            (3, good[1].__dict__)]
    frame, errors = compute_rows(tiny, KINDS["circuit"], rows, {"method": "eap", "metric": "logit_diff"}, 256)
    assert sorted(frame["row"].unique()) == [0, 3]
    assert [error["row"] for error in errors] == [1, 2]
    assert "same token length" in errors[0]["message"]
    assert f"up to {CIRCUIT_TOKENS} tokens" in errors[1]["message"]
    assert compute_rows(tiny, KINDS["circuit"], rows[1:3], {"method": "eap"}, 256)[0].columns.tolist() == \
        ["row", "edge", "score"]


def _edge_rows(n_rows: int, n_edges: int = 70_651) -> pd.DataFrame:
    """Circuit job rows of SmolLM2's graph size, heavy-tailed scores like real edge scores, float32 values."""
    scores = np.random.default_rng(0).standard_t(3, size=(n_rows, n_edges)).astype(np.float32) * 1e-3
    return pd.DataFrame({"row": np.repeat(np.arange(n_rows), n_edges),
                         "edge": np.tile(np.arange(n_edges, dtype=np.int32), n_rows),
                         "score": scores.ravel().astype(np.float64)})


def check_edge_job_round_trip(jobs: JobStore, rows: pd.DataFrame, shard_rows: int) -> None:
    """Shards of ``shard_rows`` rows stored, joined and finished like the runner does; the result loads equal."""
    params = {"kind": "circuit", "model": "m", "dataset": Dataset("d", ("a",)).to_dict()}
    n_rows = int(rows["row"].max()) + 1
    job = jobs.create("circuit", "m", params, n_rows)
    jobs.start(job, shard_rows)
    for number, first in enumerate(range(0, n_rows, shard_rows)):
        assert jobs.save_shard(job, number, rows[rows["row"].between(first, first + shard_rows - 1)], [])
    joined = pd.concat([frame for frame, _ in jobs.shards(job).values()], ignore_index=True)
    assert jobs.finish(job, joined.sort_values(["row", "edge"], ignore_index=True), [])
    pd.testing.assert_frame_equal(jobs.load(job).frame(), rows, check_dtype=False)


def test_edge_rows_store_compactly_and_round_trip_through_a_job(tmp_path):
    rows = _edge_rows(3)
    data = frame_bytes(rows)
    assert len(data) / 3 < 4.0 * 70_651  # under 4 bytes per edge and row: the float32 score, nearly all
    back = bytes_frame(data)
    assert back["edge"].tolist() == rows["edge"].tolist() and np.array_equal(back["score"], rows["score"])
    check_edge_job_round_trip(JobStore(ShareStore(f"sqlite:///{tmp_path / 'atlas.sqlite'}")), rows, 2)


@pytest.mark.slow
def test_a_hundred_rows_of_smollm2_edges_store_and_load_on_postgresql():
    from tests.postgres_server import postgres_server

    with postgres_server() as url:
        check_edge_job_round_trip(JobStore(ShareStore(url)), _edge_rows(100), 16)


@pytest.mark.slow
def test_the_sweep_command_runs_circuit_edges_and_writes_the_per_edge_summary(tiny, tmp_path, capsys):
    from analysis.cli.main import main

    summary = tmp_path / "edges.csv"
    assert main(["sweep", "--model", tiny.info.name, "--dataset", "ioi", "--n", "3", "--seed", "4", "--kind",
                 "circuit", "--method", "eap-ig", "--steps", "3", "--db", str(tmp_path / "cli.sqlite"),
                 "--workers", "1", "--summary", "score", "--out", str(summary)]) == 0
    assert "Circuit edges" in capsys.readouterr().err
    frame = pd.read_csv(summary, keep_default_na=False)
    direct = np.stack([_direct(tiny, pair, "eap-ig", 3) for pair in ioi_dataset(3, seed=4).pairs])
    assert list(frame.columns[:4]) == ["source", "target", "input", "score"] and set(frame["n"]) == {3}
    np.testing.assert_allclose(frame["score"], direct.mean(0), rtol=1e-4, atol=1e-6)
