"""Job records (SQLite and PostgreSQL), orphaned jobs after a restart, and jobs run on the embedded Dask cluster."""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.datasets import Dataset
from analysis.datasets.generators import ioi_dataset
from analysis.jobs import tasks
from analysis.jobs.cluster import dask_client
from analysis.jobs.kinds import KINDS, JobCancelled
from analysis.jobs.records import STALE_SECONDS, JobStore, frame_bytes, jobs_table, params_key, runner_name
from analysis.jobs.runner import JobRequest, JobRunner, shard, shard_size, wait_for
from analysis.methods.importance import ablation_importance
from analysis.methods.metrics import Metric
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from analysis.share_store import ShareStore
from tests.postgres_server import postgres_server
from tests.jobs_support import OPTIONS, SWEEP_TIMEOUT, assert_same_result, in_process, run_job, tiny_causal_folder

ROOT = Path(__file__).resolve().parent.parent
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers run this module's shard counter by value


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


def test_the_time_left_is_measured_from_the_first_progress_not_from_the_start_up():
    from dataclasses import replace

    from analysis.jobs.records import JobRecord

    # 20 s of start-up (workers, the model's load), then 0.1 of 1 row in 1 s: 9 s left, not 11 minutes
    record = JobRecord("j", "exact", "m", PARAMS, "running", 0.1, 1.0, "", "", False, 0.0, 0.0, None, None, [], None)
    assert record.seconds_left(now=21.0, since=(20.0, 0.0)) == pytest.approx(9.0)
    assert record.seconds_left(now=21.0, since=(21.0, 0.1)) is None  # no progress since the first look: no rate
    assert replace(record, done=0.0).seconds_left(now=21.0) is None


def check_record_life_cycle(jobs: JobStore) -> None:
    """queued → running (progress, heartbeat) → done with its result; the same parameters find the job."""
    job_id = jobs.create("census", "m", PARAMS, total=3)
    assert jobs.load(job_id).status == "queued" and jobs.find(PARAMS).id == job_id
    assert jobs.create("census", "m", PARAMS, total=3) is None  # one live job per parameters
    assert jobs.start(job_id, 2) and not jobs.start(job_id, 5)  # only a queued job starts, once
    assert jobs.load(job_id).shard_rows == 2
    assert jobs.save_shard(job_id, 0, _rows_table(2), []) and not jobs.save_shard(job_id, 0, _rows_table(1), [])
    assert set(jobs.stored_shards(job_id)) == {0} and len(jobs.shards(job_id)[0][0]) == 4
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
    assert jobs.stored_shards(job_id) == {}  # the shards went with the finished result


def test_a_job_record_goes_from_queued_to_done(jobs):
    check_record_life_cycle(jobs)


@pytest.mark.slow
def test_a_job_record_and_simultaneous_submits_on_postgresql():
    with postgres_server() as url:
        check_record_life_cycle(JobStore(ShareStore(url)))
        check_one_job_for_simultaneous_submits(JobStore(ShareStore(url)))


def test_cancel_and_failure_are_final(jobs):
    job_id = jobs.create("exact", "m", PARAMS, total=1)
    jobs.start(job_id, 1)
    assert not jobs.cancel_requested(job_id) and jobs.request_cancel(job_id) and jobs.cancel_requested(job_id)
    assert jobs.cancelled(job_id) and not jobs.finish(job_id, _rows_table(), [])
    assert jobs.load(job_id).status == "cancelled" and not jobs.request_cancel(job_id)
    assert jobs.find(PARAMS) is None  # a cancelled job is not reused
    failed = jobs.create("exact", "m", PARAMS, total=1)
    assert failed is not None
    assert jobs.fail(failed, "boom") and jobs.load(failed).message == "boom"
    for bad in ["", "x" * 16 + "y", "../etc/passwd", "' OR 1=1 --"]:
        assert jobs.load(bad) is None


def _set_runner(jobs: JobStore, job_id: str, runner: str, heartbeat_at: float) -> None:
    with jobs.engine.begin() as connection:
        connection.execute(jobs_table.update().where(jobs_table.c.id == job_id)
                           .values(runner=runner, heartbeat_at=heartbeat_at))


def test_jobs_whose_runner_is_gone_are_orphans_that_one_runner_claims(jobs):
    """A dead process on this host, or a silent runner elsewhere, leaves an orphan; the first claim wins."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    here = socket.gethostname()
    cases = {"dead pid": (f"{here}:{ended.pid}:abcd", time.time()),
             "earlier process with our pid": (f"{here}:{os.getpid()}:old0", time.time()),
             "silent elsewhere": ("other-host:12:abcd", time.time() - STALE_SECONDS - 1),
             "alive elsewhere": ("other-host:12:abcd", time.time()),
             "this process": (runner_name(), time.time())}
    ids = {}
    for name, (runner, heartbeat) in cases.items():
        ids[name] = jobs.create("census", "m", {**PARAMS, "case": name}, total=1)
        jobs.start(ids[name], 1)
        _set_runner(jobs, ids[name], runner, heartbeat)
    orphans = {record.id: record for record in jobs.orphans()}
    assert set(orphans) == {ids["dead pid"], ids["earlier process with our pid"], ids["silent elsewhere"]}
    dead = orphans[ids["dead pid"]]
    assert jobs.claim(dead.id, dead.runner) and not jobs.claim(dead.id, dead.runner)  # taken once
    assert jobs.load(dead.id).runner == runner_name() and not jobs.load(dead.id).orphaned
    assert jobs.load(dead.id).status == "running"


class _CountingClient:
    """Stands in for the Dask client getter: counts the job threads that ask for it; once ``release`` is set,
    fails their job (no cluster is needed to count runs)."""

    def __init__(self):
        self.calls, self.lock, self.release = 0, threading.Lock(), threading.Event()

    def __call__(self):
        with self.lock:
            self.calls += 1
        self.release.wait(10)
        raise ConnectionError("no cluster in this test")


def check_one_job_for_simultaneous_submits(jobs: JobStore, threads: int = 8) -> None:
    """``threads`` users submit the same job at the same moment: one job is created and run, all get its id."""
    client = _CountingClient()
    runner = JobRunner(jobs, client)
    request = JobRequest("census", "m", "r", Dataset("race", ("the cat sat",)), {}, 16)
    barrier = threading.Barrier(threads)

    def submit(_) -> str:
        barrier.wait()
        return runner.submit(request, owner="user")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = set(pool.map(submit, range(threads)))
    with jobs.engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(jobs_table).where(
            jobs_table.c.params_key == params_key(request.params()))).scalar()
    client.release.set()
    assert len(ids) == 1 and stored == 1
    assert wait_for(jobs, ids.pop(), 10).status == "failed" and client.calls == 1


def test_the_same_job_submitted_at_once_runs_once_on_sqlite(jobs):
    check_one_job_for_simultaneous_submits(jobs)


def test_rows_are_sharded_for_balance_and_progress():
    rows = list(enumerate({"text": str(i)} for i in range(100)))
    parts = shard(rows, shard_size(len(rows), workers=2))
    assert len(parts) == 8 and sum(len(p) for p in parts) == 100 and parts[0][0][0] == 0
    assert [len(p) for p in shard(rows[:3], shard_size(3, workers=2))] == [1, 1, 1]
    assert shard_size(2000, workers=1) == 16 and shard(rows, 16)[-1] == rows[96:]


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


RESUME_TIMEOUT = 300.0  # a bound, not a timing claim: workers run at niceness 19 and wait on a busy machine
SWEEP_ROWS = 96  # 6 shards of 16 rows for one worker: long enough to stop mid-sweep, short enough to rerun
EXACT_LOSS = {"metric": "loss", "mode": "zero"}


def sweep_texts() -> list[str]:
    return [f"the cat sat on the mat {'dog ' * (i % 7)}" for i in range(SWEEP_ROWS)]


@pytest.fixture(scope="module")
def uninterrupted(tiny_folder) -> pd.DataFrame:
    """The exact ablation of every sweep row computed here in one go: what an interrupted job must end with."""
    request = JobRequest("exact", tiny_folder, "", Dataset("sweep", tuple(sweep_texts())), EXACT_LOSS, 64)
    return in_process(tiny_folder, request)[0]


def _counted_shard(log: str, *args, **kwargs):
    """Runs on a worker instead of ``run_shard``: appends the shard's first row to ``log``, then computes it."""
    with open(log, "a") as out:
        out.write(f"{args[4][0][0]}\n")
    return tasks.run_shard(*args, **kwargs)


def _wait_for_stored_shards(jobs: JobStore, alive, timeout: float = SWEEP_TIMEOUT) -> tuple[str, dict[int, str]]:
    """Poll until some job of ``jobs`` has at least one stored shard; returns (job id, its stored shards)."""
    deadline = time.monotonic() + timeout
    while True:
        assert alive() and time.monotonic() < deadline
        recent = jobs.recent(1)
        if recent and (stored := jobs.stored_shards(recent[0].id)):
            return recent[0].id, stored
        time.sleep(0.05)


@pytest.mark.slow
def test_a_job_whose_server_stopped_resumes_from_its_stored_shards(embedded, tiny_folder, uninterrupted, tmp_path,
                                                                   monkeypatch):
    """The CLI runs a sweep (its own embedded cluster) and is stopped with SIGTERM mid-sweep; a new runner (what a
    restarted app does at start-up) resumes it: no stored shard is computed again, the result equals an
    uninterrupted run."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": text}) + "\n" for text in sweep_texts()))
    database = tmp_path / "atlas.sqlite"
    jobs = JobStore(ShareStore(f"sqlite:///{database}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis", "sweep", "--model", tiny_folder, "--dataset", str(rows), "--kind", "exact",
         "--metric", "loss", "--max-tokens", "64", "--db", str(database), "--workers", "1",
         "--out", str(tmp_path / "out.csv")],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        job_id, _ = _wait_for_stored_shards(jobs, lambda: process.poll() is None)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    before = jobs.stored_shards(job_id)
    shards = math.ceil(SWEEP_ROWS / jobs.load(job_id).shard_rows)
    assert 0 < len(before) < shards and jobs.load(job_id).status == "running"

    log = tmp_path / "computed.log"
    monkeypatch.setattr(tasks, "run_shard", functools.partial(_counted_shard, str(log)))
    runner = JobRunner(jobs, dask_client)
    assert runner.resume_orphans() == 1 and runner.resume_orphans() == 0  # resumed once, by this runner
    record = wait_for(jobs, job_id, RESUME_TIMEOUT)
    assert record.status == "done", record.message
    size = record.shard_rows
    computed = [int(line) // size for line in log.read_text().split()]
    assert sorted(computed) == sorted(set(range(shards)) - set(before))  # each missing shard once, no stored one
    assert_same_result(record.frame(), uninterrupted)


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_nothing(embedded, tiny_folder, uninterrupted):
    """One of the embedded cluster's two worker processes is killed while the sweep runs: Dask runs its shards
    again elsewhere, and the result equals an uninterrupted run."""
    client = dask_client()
    pids = client.run(os.getpid)
    request = JobRequest("exact", tiny_folder, "", Dataset("sweep", tuple(sweep_texts())), EXACT_LOSS, 64)
    job_id = embedded.submit(request)
    _wait_for_stored_shards(embedded.jobs, lambda: embedded.jobs.load(job_id).active)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    record = wait_for(embedded.jobs, job_id, RESUME_TIMEOUT)
    assert record.status == "done", record.message
    assert victim not in client.run(os.getpid).values()  # the worker really died (its nanny started a new one)
    assert_same_result(record.frame(), uninterrupted)


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
def test_the_sweep_command_knocks_a_selection_out_on_every_row(embedded, tiny_folder, tmp_path, capsys, monkeypatch):
    from analysis.cli.main import main

    monkeypatch.setattr("analysis.cli.jobs.close_clients", lambda: None)  # keep this module's cluster for the next test

    database, summary = tmp_path / "cli.sqlite", tmp_path / "summary.csv"
    assert main(["sweep", "--model", tiny_folder, "--dataset", "ioi", "--n", "4", "--kind", "knockout", "--selection",
                 "L1H0, L0H1:resample:0", "--db", str(database), "--summary", "all", "--out", str(summary)]) == 0
    frame = pd.read_csv(summary)
    assert list(frame["value"]) == ["loss_delta", "logprob_delta", "kl"] and set(frame["n"]) == {4}
    job_id = capsys.readouterr().err.split("job ")[1].split(":")[0]
    record = JobStore(ShareStore(f"sqlite:///{database}")).load(job_id)
    assert record.params["options"] == {"selection": "L0H1:resample:0,L1H0:zero:0"}
    assert frame.set_index("value").loc["kl", "mean"] == pytest.approx(record.frame()["kl"].mean(), rel=1e-5)


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


def test_the_sweep_prints_one_progress_line_per_completed_shard_when_not_on_a_terminal():
    import io
    from dataclasses import replace

    from analysis.cli.jobs import progress_reporter
    from analysis.jobs.records import JobRecord

    log = io.StringIO()  # a log file: no terminal
    report = progress_reporter(log)
    record = JobRecord("j", "census", "m", PARAMS, "running", 0.0, 20.0, "", "", False, 0.0, 0.0, None, None, [], None)
    for done in (0.0, 0.2, 0.5, 0.9, 4.0, 4.3, 4.6, 8.0, 8.0):  # heads of rows in progress, then shards of 4 rows
        report(replace(record, done=done, detail=f"{done:g} of 20 rows"))
    report(replace(record, status="done", done=20.0))
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["running: 0 of 20 rows (0%)", "running: 4 of 20 rows (20%)",
                                           "running: 8 of 20 rows (40%)", "done (100%)"]


def test_the_sweep_command_refuses_a_selection_it_cannot_knock_out(tiny_folder, tmp_path, capsys):
    from analysis.cli.main import main

    database = str(tmp_path / "cli.sqlite")
    assert main(["sweep", "--model", tiny_folder, "--dataset", "natural", "--n", "3", "--kind", "knockout",
                 "--selection", "L9H0", "--db", database]) == 2
    assert "layer 9 does not exist" in capsys.readouterr().err
    assert main(["sweep", "--model", tiny_folder, "--dataset", "natural", "--kind", "knockout", "--selection",
                 "L1H0:resample:0", "--db", database]) == 2
    assert "sweep pair rows" in capsys.readouterr().err
    assert main(["sweep", "--model", tiny_folder, "--dataset", "natural", "--kind", "knockout", "--selection", "L1H0",
                 "--summary", "delta", "--db", database]) == 2
    assert "knockout gives loss_delta, logprob_delta, kl (or all)" in capsys.readouterr().err
    assert JobStore(ShareStore(f"sqlite:///{database}")).recent() == []  # no job was started

