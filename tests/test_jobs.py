"""Job records (SQLite and PostgreSQL), orphaned jobs after a restart, and jobs run on the embedded Dask cluster."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.datasets import Dataset
from analysis.datasets.generators import ioi_dataset
from analysis.jobs.cluster import dask_client
from analysis.jobs.kinds import KINDS, JobCancelled
from analysis.jobs.records import RESTART_MESSAGE, STALE_SECONDS, JobStore, frame_bytes
from analysis.jobs.runner import JobRequest, JobRunner, shard, wait_for
from analysis.methods.importance import ablation_importance
from analysis.methods.metrics import Metric
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from analysis.share_store import ShareStore, jobs_table
from tests.postgres_server import postgres_server
from tests.jobs_support import OPTIONS, SWEEP_TIMEOUT, assert_same_result, in_process, run_job, tiny_causal_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> str:
    return tiny_causal_folder(tmp_path_factory.mktemp("models") / "tiny-ioi-llama")


@pytest.fixture
def jobs(tmp_path) -> JobStore:
    return JobStore(ShareStore(f"sqlite:///{tmp_path / 'atlas.sqlite'}"))


def _rows_table(n_rows: int = 3) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"row": r, "head": ["L0H0", "L0H1"], "layer": 0, "head_index": [0, 1],
                                    "score": [0.25 * r, 1.5]}) for r in range(n_rows)], ignore_index=True)


PARAMS = {"kind": "census", "model": "m", "dataset": {"name": "d", "rows": [{"text": "a"}]}}


def check_record_life_cycle(jobs: JobStore) -> None:
    """queued → running (progress, heartbeat) → done with its result; the same parameters find the job."""
    job_id = jobs.create("census", "m", PARAMS, total=3)
    assert jobs.load(job_id).status == "queued" and jobs.find(PARAMS).id == job_id
    assert jobs.start(job_id) and not jobs.start(job_id)  # only a queued job starts, once
    assert jobs.progress(job_id, 1.5, "1 of 3 rows")
    running = jobs.load(job_id)
    assert (running.status, running.fraction, running.detail, running.result) == ("running", 0.5, "1 of 3 rows", None)
    assert running.seconds_left() is not None
    assert jobs.finish(job_id, _rows_table(), [{"row": 2, "message": "empty"}])
    done = jobs.load(job_id)
    assert (done.status, done.done, done.row_errors) == ("done", 3.0, [{"row": 2, "message": "empty"}])
    pd.testing.assert_frame_equal(done.frame(), _rows_table())
    assert not jobs.progress(job_id, 1.0) and not jobs.fail(job_id, "late") and jobs.load(job_id).status == "done"
    assert jobs.find(PARAMS).id == job_id and jobs.find({**PARAMS, "model": "other"}) is None
    assert [record.id for record in jobs.recent()] == [job_id]


def test_a_job_record_goes_from_queued_to_done(jobs):
    check_record_life_cycle(jobs)


@pytest.mark.slow
def test_a_job_record_on_postgresql():
    with postgres_server() as url:
        check_record_life_cycle(JobStore(ShareStore(url)))


def test_cancel_and_failure_are_final(jobs):
    job_id = jobs.create("exact", "m", PARAMS, total=1)
    jobs.start(job_id)
    assert not jobs.cancel_requested(job_id) and jobs.request_cancel(job_id) and jobs.cancel_requested(job_id)
    assert jobs.cancelled(job_id) and not jobs.finish(job_id, _rows_table(), [])
    assert jobs.load(job_id).status == "cancelled" and not jobs.request_cancel(job_id)
    assert jobs.find(PARAMS) is None  # a cancelled job is not reused
    failed = jobs.create("exact", "m", PARAMS, total=1)
    assert jobs.fail(failed, "boom") and jobs.load(failed).message == "boom"
    for bad in ["", "x" * 16 + "y", "../etc/passwd", "' OR 1=1 --"]:
        assert jobs.load(bad) is None


def _set_runner(jobs: JobStore, job_id: str, runner: str, heartbeat_at: float) -> None:
    with jobs.engine.begin() as connection:
        connection.execute(jobs_table.update().where(jobs_table.c.id == job_id)
                           .values(runner=runner, heartbeat_at=heartbeat_at))


def test_jobs_whose_runner_is_gone_are_marked_failed(jobs):
    """A dead process on this host, or a silent runner elsewhere, leaves a failed record — never a running one."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    here = socket.gethostname()
    cases = {"dead pid": (f"{here}:{ended.pid}:abcd", time.time()),
             "earlier process with our pid": (f"{here}:{os.getpid()}:old0", time.time()),
             "silent elsewhere": ("other-host:12:abcd", time.time() - STALE_SECONDS - 1),
             "alive elsewhere": ("other-host:12:abcd", time.time())}
    ids = {}
    for name, (runner, heartbeat) in cases.items():
        ids[name] = jobs.create("census", "m", {**PARAMS, "case": name}, total=1)
        jobs.start(ids[name])
        _set_runner(jobs, ids[name], runner, heartbeat)
    assert jobs.load(ids["dead pid"]).status == "failed" and jobs.load(ids["dead pid"]).message == RESTART_MESSAGE
    assert jobs.fail_orphans() == 2
    assert {name: jobs.load(job_id).status for name, job_id in ids.items()} == {
        "dead pid": "failed", "earlier process with our pid": "failed", "silent elsewhere": "failed",
        "alive elsewhere": "running"}


def test_rows_are_sharded_for_balance_and_progress():
    rows = list(enumerate({"text": str(i)} for i in range(100)))
    parts = shard(rows, workers=2)
    assert len(parts) == 8 and sum(len(p) for p in parts) == 100 and parts[0][0][0] == 0
    assert [len(p) for p in shard(rows[:3], workers=2)] == [1, 1, 1]
    assert max(len(p) for p in shard(rows * 20, workers=1)) == 16


def test_raising_from_the_progress_callback_stops_an_exact_ablation(tiny_llama_handle):
    calls = []

    def cancel_after_first_layer(done: int, total: int) -> None:
        calls.append(done)
        raise JobCancelled("stop")

    ids = encode_text(tiny_llama_handle, "the cat sat on the mat")[0]
    with pytest.raises(JobCancelled):
        ablation_importance(tiny_llama_handle, ids, Metric("loss"), progress=cancel_after_first_layer)
    assert calls == [1]


def test_results_are_stored_compactly():
    frame = _rows_table(50)
    assert len(frame_bytes(frame)) < frame.memory_usage(deep=True).sum()


# ---- on the embedded Dask cluster (a LocalCluster of worker processes, started on first use) ----

@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> JobRunner:
    os.environ.setdefault("ATLAS_DASK_WORKERS", "2")
    jobs = JobStore(ShareStore(f"sqlite:///{tmp_path_factory.mktemp('db') / 'atlas.sqlite'}"))
    return JobRunner(jobs, dask_client)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_sweep_on_the_embedded_cluster_equals_the_in_process_result(embedded, tiny_folder, kind):
    dataset = ioi_dataset(9, seed=2)
    bad = Dataset(dataset.name, dataset.texts + ("   ",)) if not KINDS[kind].needs_pairs else dataset
    request = JobRequest(kind, tiny_folder, load_model(tiny_folder).info.revision, bad, OPTIONS[kind], 64)
    record = run_job(embedded, request)
    expected, errors = in_process(tiny_folder, request)
    assert_same_result(record.frame(), expected)
    assert record.row_errors == errors and len(record.frame()["row"].unique()) == len(bad) - len(errors)
    if not KINDS[kind].needs_pairs:
        assert record.row_errors == [{"row": 9, "message": "The text is empty: type or paste some text, or pick an "
                                                           "example."}]
    assert embedded.submit(request) == record.id  # the same parameters reuse the finished job


@pytest.mark.slow
def test_embedded_workers_run_at_a_lower_priority(embedded):
    client = dask_client()
    assert set(client.run(os.getpriority, os.PRIO_PROCESS, 0).values()) == {19}  # the worker's main thread
    assert client.submit(os.getpriority, os.PRIO_PROCESS, 0, pure=False).result() == 19  # a task's thread
    assert os.getpriority(os.PRIO_PROCESS, 0) < 19  # the app itself is untouched


@pytest.mark.slow
def test_a_running_sweep_can_be_cancelled(embedded, tiny_folder):
    dataset = Dataset("many", tuple(f"the cat sat on the mat {'dog ' * (i % 7)}" for i in range(1500)))
    request = JobRequest("exact", tiny_folder, "", dataset, {"metric": "loss", "mode": "zero"}, 64)
    job_id = embedded.submit(request)
    deadline = time.monotonic() + SWEEP_TIMEOUT
    while (record := embedded.jobs.load(job_id, with_result=False)).done == 0 and record.active:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert record.status == "running", record.message
    assert embedded.jobs.request_cancel(job_id)
    final = wait_for(embedded.jobs, job_id, 30)
    assert final.status == "cancelled" and final.result is None and final.done < len(dataset)
    assert embedded.submit(request) != job_id  # a cancelled job is started afresh


@pytest.mark.slow
def test_a_worker_with_other_weights_fails_the_job_with_the_reason(embedded, tiny_folder):
    request = JobRequest("census", tiny_folder, "not-this-revision", Dataset("one", ("the cat",)), {}, 64)
    record = wait_for(embedded.jobs, embedded.submit(request), SWEEP_TIMEOUT)
    assert record.status == "failed" and "give the workers the same weights" in record.message


@pytest.mark.slow
def test_killing_the_process_running_a_job_leaves_it_failed(tmp_path, tiny_folder):
    """The CLI runs a sweep (its own embedded cluster); killed mid-job, the record reads as failed, not running."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"the cat sat on the mat {'dog ' * (i % 9)}"}) + "\n"
                            for i in range(4000)))
    database = tmp_path / "atlas.sqlite"
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis", "sweep", "--model", tiny_folder, "--dataset", str(rows), "--kind", "exact",
         "--db", str(database), "--workers", "1", "--out", str(tmp_path / "out.csv")],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    jobs = JobStore(ShareStore(f"sqlite:///{database}"))
    try:
        deadline = time.monotonic() + SWEEP_TIMEOUT
        while not (recent := jobs.recent(1)) or recent[0].done == 0:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-2000:]
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    record = jobs.load(recent[0].id)
    assert record.status == "failed" and record.message == RESTART_MESSAGE and record.result is None
    with jobs.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(jobs_table)
                                  .where(jobs_table.c.status == "running")).scalar() == 0


def test_the_dataset_command_writes_jsonl_and_reports_bad_rows(tmp_path, capsys):
    from analysis.cli.main import main

    out = tmp_path / "ioi.jsonl"
    assert main(["dataset", "ioi", "--n", "4", "--seed", "2", "--out", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == ioi_dataset(4, seed=2).rows()
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nfine\n\nalso fine,extra\n")
    assert main(["dataset", str(bad)]) == 0
    captured = capsys.readouterr()
    assert captured.out == '{"text": "fine"}\n'
    assert "bad.csv: row 2 (line 4): has 2 fields; the header has 1" in captured.err
    assert main(["dataset", str(tmp_path / "missing.csv")]) == 2
    assert "neither a generator" in capsys.readouterr().err


@pytest.mark.slow
def test_the_sweep_and_jobs_commands(embedded, tiny_folder, tmp_path, capsys):
    from analysis.cli.main import main

    database, summary = tmp_path / "cli.sqlite", tmp_path / "summary.csv"
    assert main(["sweep", "--model", tiny_folder, "--dataset", "ioi", "--n", "5", "--kind", "exact", "--metric", "kl",
                 "--db", str(database), "--summary", "delta", "--out", str(summary)]) == 0
    job_id = capsys.readouterr().err.split("job ")[1].split(":")[0]
    frame = pd.read_csv(summary)
    assert len(frame) == 8 and set(frame["n"]) == {5} and (frame["ci_low"] <= frame["mean"]).all()
    assert main(["jobs", "--db", str(database)]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}  done")
    assert main(["jobs", "show", job_id, "--db", str(database), "--out", str(tmp_path / "rows.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "rows.parquet")) == 5 * 8
    assert main(["jobs", "cancel", job_id, "--db", str(database)]) == 0
    assert "already done" in capsys.readouterr().err
    assert main(["jobs", "show", "nope", "--db", str(database)]) == 2
