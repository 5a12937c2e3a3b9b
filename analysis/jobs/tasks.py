"""The function a Dask worker runs for one shard of a job's rows.

It loads the model once per worker process (``analysis.jobs.cluster.worker_model``), checks that the
worker's weights are the revision the app asked for, computes the rows with ``compute_rows`` and reports
progress as worker events on the job's topic. Before each row and each reported step it checks the job's
cancel event (at most every ``REPORT_SECONDS``) and stops if it is set.
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd
from distributed import Event, get_worker

from analysis.jobs.cluster import worker_model
from analysis.jobs.kinds import KINDS, JobCancelled, compute_rows


REPORT_SECONDS = 0.25  # progress events and cancel checks at most this often per shard


class RevisionMismatch(RuntimeError):
    """The worker's copy of the model is not the one the app analyses."""


def progress_topic(job_id: str) -> str:
    """The worker-event topic a job's progress is reported on."""
    return f"atlas-job-progress-{job_id}"


def cancel_event_name(job_id: str) -> str:
    """The name of the Dask event that is set when a job is cancelled."""
    return f"atlas-job-cancel-{job_id}"


def run_shard(job_id: str, kind: str, model: str, revision: str, rows: list[tuple[int, dict[str, str]]],
              options: dict[str, Any], max_tokens: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Compute ``rows`` of a job on this worker: (long result table, row errors)."""
    handle = worker_model(model)
    if revision and handle.info.revision != revision:
        raise RevisionMismatch(f"The worker has revision {handle.info.revision} of {model}, the app {revision}: "
                               "give the workers the same weights.")
    worker, cancel = get_worker(), Event(cancel_event_name(job_id))
    topic, last_report = progress_topic(job_id), [0.0]

    def report(row: int, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_report[0] < REPORT_SECONDS:
            return
        last_report[0] = now
        if cancel.is_set():
            raise JobCancelled(job_id)
        worker.log_event(topic, {"row": row, "done": done, "total": total})

    try:
        return compute_rows(handle, KINDS[kind], rows, options, max_tokens, report)
    except JobCancelled:  # the runner has stopped waiting for this shard
        return pd.DataFrame(), []
