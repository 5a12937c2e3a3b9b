"""Background jobs in the app: the process-wide runner, and a live panel with progress, time left and Cancel.

The panel is a fragment that re-reads the job record every second (the job itself runs on Dask, outside the
page's script run); when the job ends it reruns the whole page, which then shows the result from the record.
"""
from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from analysis.jobs.cluster import dask_client
from analysis.jobs.kinds import KINDS
from analysis.jobs.records import JobRecord, JobStore
from analysis.jobs.runner import JobRequest, JobRunner
from analysis.methods.aggregate import named_edge_summary
from analysis.methods.circuit_graph import graph_of
from components.auth import can_write, user_name
from components.caches.models import cached_model
from components.share_links import DATABASE_ERRORS, share_store
from components.state import update_state

POLL_SECONDS = 1.0
_FIRST_PROGRESS = "atlas_job_first_progress"  # job id -> (time, done) when this session first saw it progress
_START_PROBLEM = "atlas_job_start_problem"


@st.cache_resource(show_spinner=False)
def job_store() -> JobStore:
    """Job records in the share database."""
    return JobStore(share_store())


@st.cache_resource(show_spinner=False)
def job_runner() -> JobRunner:
    """The process's job runner (the Dask cluster starts with the first job); jobs left unfinished by an earlier
    server resume now, from their stored shards."""
    runner = JobRunner(job_store(), dask_client)
    runner.resume_orphans()
    return runner


def resume_unfinished_jobs() -> None:
    """Start this process's job runner, which resumes the jobs an earlier server left unfinished (once per process;
    tried again on the next run if the database cannot be reached)."""
    try:
        job_runner()
    except DATABASE_ERRORS:
        return


def start_job(request: JobRequest, priority: int = 0, **state_changes) -> None:
    """Button callback: submit the job and show it (``job`` and ``state_changes`` go to the view state).

    If it cannot start, the reason is kept for ``start_problem`` to show on the next run.
    """
    if not can_write():
        st.session_state[_START_PROBLEM] = "Sign in to start jobs (this shared link is open read-only)."
        return
    try:
        job_id = job_runner().submit(request, priority, owner=user_name())
    except (ValueError, *DATABASE_ERRORS) as error:
        st.session_state[_START_PROBLEM] = f"Could not start the job: {error}"
        return
    update_state(job=job_id, **state_changes)


def start_problem() -> None:
    """Show why the last job could not start, once."""
    if _START_PROBLEM in st.session_state:
        st.error(st.session_state.pop(_START_PROBLEM))


def load_job(job_id: str) -> JobRecord | None:
    """The job's record without its result (None if unknown, or the database is unreachable); a job whose
    server stopped resumes here, in this server."""
    try:
        record = job_store().load(job_id, with_result=False)
        if record is not None and job_runner().resume(record):
            record = job_store().load(job_id, with_result=False)
        return record
    except DATABASE_ERRORS:
        return None


@st.cache_data(max_entries=16, show_spinner="Loading the job's result…")
def job_result(job_id: str) -> pd.DataFrame:
    """A finished job's result table (finished results never change, so they are cached by id)."""
    return job_store().load(job_id).frame()


@st.cache_resource(max_entries=8, show_spinner="Averaging the job's edge scores…")
def edge_job_table(job_id: str, model: str) -> pd.DataFrame:
    """A finished circuit job's per-edge summary with the edges' names from ``model``'s graph, in the graph's edge
    order (``named_edge_summary``; kept as one shared object, not copied: do not modify it)."""
    handle = cached_model(model)
    return named_edge_summary(graph_of(handle.info, handle.parts.parallel_residual), job_store().load(job_id).frame())


IMPORTANCE_JOBS, PATCHING_JOBS = "Head importance page", "Activation patching page"
PAGE_JOBS = {IMPORTANCE_JOBS: "importance", PATCHING_JOBS: "patching"}  # a page job's dataset name -> its page


def job_page(record: JobRecord) -> str | None:
    """The URL path of the page that started a job and shows its result, or None for a dataset sweep."""
    return PAGE_JOBS.get(record.params["dataset"]["name"])


def job_link(record: JobRecord) -> str:
    """The URL with only ``?job=<id>`` of the page that shows the job (the page that started it, else this one):
    what a teammate opens to see the job."""
    here = (st.context.url or "").split("?")[0]
    page = job_page(record)
    return f"{here.rsplit('/', 1)[0] + '/' + page if page else here}?job={record.id}"


def rows_text(count: int) -> str:
    """'1 row', '1,200 rows'."""
    return f"{count:,} row{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """'45 s', '3 min 05 s' or '2 h 10 min'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def progress_text(record: JobRecord) -> str:
    """What the progress bar says: the kind, how far, and the time left."""
    title = KINDS[record.kind].title if record.kind in KINDS else record.kind
    if record.status == "queued" or not record.detail:
        return f"{title}: starting (the first job starts the workers and loads the model)…"
    seen = st.session_state.setdefault(_FIRST_PROGRESS, {})
    if record.done > 0:  # the first look with progress: the rate is measured from here on
        seen.setdefault(record.id, (time.time(), record.done))
    left = record.seconds_left(since=seen.get(record.id))
    estimate = f" — about {duration(left)} left" if left is not None else " — estimating the time left…"
    return f"{title}: {record.detail}{estimate}"


@st.fragment(run_every=POLL_SECONDS)
def job_progress(job_id: str) -> None:
    """Progress, time left and a Cancel button while the job runs; reruns the page when it ends."""
    record = load_job(job_id)
    if record is None or not record.active:
        st.rerun(scope="app")
    st.progress(record.fraction, text=progress_text(record))
    if record.cancel_requested:
        st.caption("Cancelling…")
    else:
        st.button("Cancel", key=f"cancel_{job_id}", icon=":material/cancel:", on_click=job_store().request_cancel,
                  args=(job_id,))
    started = record.started_at or record.created_at
    st.caption(f"Job {job_id} · running for {duration(time.time() - started)} on the Dask workers; this page "
               "and everyone else's stay responsive. Its link reopens the result when it is done.")


def job_outcome(record: JobRecord) -> None:
    """A message for a job that ended without a result (failed or cancelled)."""
    if record.status == "failed":
        st.error(f"Job {record.id} failed: {record.message}")
    elif record.status == "cancelled":
        st.warning(f"Job {record.id} was cancelled.")
