"""Start jobs on the Dask cluster and keep their records up to date, outside any page's script run.

``JobRunner.submit`` stores a queued record (or returns the job that already has the same parameters, even
when two people submit it at the same moment) and hands it to a background thread. The thread cuts the rows
into shards (the size is fixed when the job starts and kept with it), sends the shards not yet stored to the
workers (``run_shard``), stores each shard's rows as soon as it finishes, follows the progress events, writes
progress and a heartbeat to the record, stops the shards when someone asks to cancel (from any process: the
request is a flag on the record), and finally joins the stored shards and writes the result and the done
status in one transaction. A worker lost mid-shard is Dask's to handle: it runs the shard again elsewhere.
A job whose runner stopped (a server restart, a crash) is ``resume``d by the next runner that sees it — at
start-up or when someone opens it — from its stored shards, so no finished shard is computed twice and the
result equals an uninterrupted run. Any failure ends the record as failed with the reason.
"""
from __future__ import annotations

import importlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
from distributed import Client, Event, Future

from analysis.datasets import Dataset
from analysis.jobs.cluster import worker_count
from analysis.jobs.kinds import KINDS, TABLE_KEYS
from analysis.jobs.records import JobRecord, JobStore, runner_name
from analysis.jobs.tasks import cancel_event_name, progress_topic

POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 5.0
SHARDS_PER_WORKER = 4
MAX_SHARD_ROWS = 16
INTERACTIVE_PRIORITY = 10  # single-text jobs started from a page go before queued sweep shards


@dataclass(frozen=True)
class JobRequest:
    """Everything a job's result depends on."""

    kind: str
    model: str
    revision: str
    dataset: Dataset
    options: dict[str, Any] = field(default_factory=dict)
    max_tokens: int = 256

    def params(self) -> dict[str, Any]:
        """The parameters stored with the record (and hashed to find an identical job)."""
        return {"kind": self.kind, "model": self.model, "revision": self.revision, "max_tokens": self.max_tokens,
                "options": self.options, "dataset": self.dataset.to_dict()}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "JobRequest":
        """The request a record's parameters describe (``params`` reversed)."""
        return cls(params["kind"], params["model"], params["revision"], Dataset.from_dict(params["dataset"]),
                   params["options"], int(params["max_tokens"]))


def shard_size(n_rows: int, workers: int) -> int:
    """Rows per shard: about ``SHARDS_PER_WORKER`` shards per worker (for balance and progress), at most 16 rows."""
    return max(1, min(MAX_SHARD_ROWS, math.ceil(n_rows / (workers * SHARDS_PER_WORKER))))


def shard(rows: list[tuple[int, dict[str, str]]], size: int) -> list[list[tuple[int, dict[str, str]]]]:
    """Rows cut into consecutive shards of ``size`` rows (the last may be shorter); shard i is always the same rows."""
    return [rows[start:start + size] for start in range(0, len(rows), size)]


class _Progress:
    """Completed rows plus the fractions of rows still running, fed by worker events (thread-safe)."""

    def __init__(self):
        self.lock, self.completed, self.partial, self.step = threading.Lock(), 0, {}, (0, 0)

    def event(self, message: tuple[float, dict[str, int]]) -> None:
        _, payload = message
        with self.lock:
            self.partial[payload["row"]] = payload["done"] / max(payload["total"], 1)
            self.step = (payload["done"], payload["total"])

    def shard_done(self, rows: list[int]) -> None:
        with self.lock:
            self.completed += len(rows)
            for row in rows:
                self.partial.pop(row, None)

    def done(self) -> float:
        with self.lock:
            return self.completed + sum(self.partial.values())


class JobRunner:
    """Runs jobs on a Dask cluster from background threads of this process."""

    def __init__(self, jobs: JobStore, client: Callable[[], Client]):
        self.jobs, self.client = jobs, client

    def submit(self, request: JobRequest, priority: int = 0, owner: str = "") -> str:
        """Start the job (or return the id of a running or finished job with the same parameters); ``owner`` is
        the name shown as who started it."""
        if request.kind not in KINDS:
            raise ValueError(f"Unknown job kind '{request.kind}'; use one of {', '.join(KINDS)}.")
        if KINDS[request.kind].needs_pairs and not request.dataset.has_pairs:
            raise ValueError(f"{KINDS[request.kind].title} needs (clean, corrupted, target, distractor) rows.")
        if not len(request.dataset):
            raise ValueError("The dataset has no rows.")
        while True:
            existing = self.jobs.find(request.params())
            if existing is not None:
                self.resume(existing, priority)
                return existing.id
            job_id = self.jobs.create(request.kind, request.model, request.params(), len(request.dataset), owner)
            if job_id is not None:  # else someone created it between find and create: find it
                self._start_thread(job_id, request, priority)
                return job_id

    def resume(self, record: JobRecord, priority: int = 0) -> bool:
        """Take over an orphaned job and go on from its stored shards; False if it is not orphaned (or another
        runner took it first)."""
        if not record.orphaned or not self.jobs.claim(record.id, record.runner):
            return False
        try:
            request = JobRequest.from_params(record.params)
        except (KeyError, TypeError, ValueError) as error:
            self.jobs.fail(record.id, f"The job cannot be resumed: its parameters are unreadable ({error}).")
            return False
        self._start_thread(record.id, request, priority)
        return True

    def resume_orphans(self) -> int:
        """Resume every orphaned job (at start-up); returns how many this runner took."""
        return sum(self.resume(record) for record in self.jobs.orphans())

    def _start_thread(self, job_id: str, request: JobRequest, priority: int) -> None:
        threading.Thread(target=self._run, args=(job_id, request, priority), name=f"atlas-job-{job_id}",
                         daemon=True).start()

    def _run(self, job_id: str, request: JobRequest, priority: int) -> None:
        try:
            client = self.client()
            self.jobs.start(job_id, shard_size(len(request.dataset), worker_count(client)))
            record = self.jobs.load(job_id, with_result=False)
            if record.status == "running" and record.runner == runner_name():
                self._follow(client, job_id, request, record.shard_rows, priority)
        except Exception as error:  # noqa: BLE001 - whatever happened, the record must not stay "running"
            self.jobs.fail(job_id, f"The job failed: {type(error).__name__}: {error}")

    def _follow(self, client: Client, job_id: str, request: JobRequest, size: int, priority: int) -> None:
        rows = list(enumerate(request.dataset.rows()))
        parts = shard(rows, size)
        stored = set(self.jobs.stored_shards(job_id))
        progress = _Progress()
        progress.shard_done([index for number in stored for index, _ in parts[number]])
        topic = progress_topic(job_id)
        client.subscribe_topic(topic, progress.event)
        # Looked up now: Streamlit re-imports edited modules, and Dask pickles a function by its current import path.
        run_shard = importlib.import_module("analysis.jobs.tasks").run_shard
        futures: dict[Future, int] = {
            client.submit(run_shard, job_id, request.kind, request.model, request.revision, parts[number],
                          request.options, request.max_tokens, pure=False, priority=priority): number
            for number in range(len(parts)) if number not in stored}
        written, last_write = -1.0, 0.0
        try:
            while futures:
                if self.jobs.cancel_requested(job_id):
                    Event(cancel_event_name(job_id), client=client).set()
                    client.cancel(list(futures))
                    self.jobs.cancelled(job_id)
                    return
                for future in [f for f in futures if f.done()]:
                    frame, row_errors = future.result()  # re-raises a shard's failure
                    number = futures.pop(future)
                    self.jobs.save_shard(job_id, number, frame, row_errors)
                    progress.shard_done([index for index, _ in parts[number]])
                done, now = progress.done(), time.monotonic()
                if done != written or now - last_write > HEARTBEAT_SECONDS:
                    if not self.jobs.progress(job_id, done, _detail(request, progress, len(rows))):
                        return  # someone else ended the record (e.g. a replica that took this runner for dead)
                    written, last_write = done, now
                if futures:
                    time.sleep(POLL_SECONDS)
        finally:
            client.unsubscribe_topic(topic)
            client.cancel(list(futures))
        self._finish(job_id, request.kind)

    def _finish(self, job_id: str, kind: str) -> None:
        shards = self.jobs.shards(job_id)
        errors = sorted((error for _, row_errors in shards.values() for error in row_errors),
                        key=lambda error: error["row"])
        frames = [frame for frame, _ in shards.values() if len(frame)]
        if not frames:
            first = f" First: row {errors[0]['row']}: {errors[0]['message']}" if errors else ""
            self.jobs.fail(job_id, f"No row could be computed.{first}")
            return
        order = ["row", *TABLE_KEYS[KINDS[kind].table]]
        result = pd.concat(frames, ignore_index=True).sort_values(order, ignore_index=True)
        self.jobs.finish(job_id, result, errors)


def _detail(request: JobRequest, progress: _Progress, n_rows: int) -> str:
    step_name = KINDS[request.kind].step_name
    if n_rows == 1 and step_name and progress.step[1] > 1:
        return f"{step_name} {progress.step[0]} of {progress.step[1]}"
    return f"{progress.completed} of {n_rows} rows"


def wait_for(jobs: JobStore, job_id: str, timeout: float,
             on_progress: Callable[[JobRecord], None] | None = None) -> JobRecord:
    """Poll a job until it is no longer running (or ``timeout`` seconds pass); returns its last record."""
    deadline = time.monotonic() + timeout
    while True:
        record = jobs.load(job_id, with_result=False)
        if record is None:
            raise ValueError(f"There is no job {job_id}.")
        if on_progress is not None:
            on_progress(record)
        if not record.active:
            return jobs.load(job_id)
        if time.monotonic() > deadline:
            return record
        time.sleep(POLL_SECONDS)
