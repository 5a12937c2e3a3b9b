"""The importance page's exact all-heads ablation, run on request as a background job.

The job's parameters are the page's model, text, token cap, metric and ablation mode, so a job with the same
parameters (started earlier, or by a teammate) is reused, and ``?job=<id>`` in the page's link reopens it.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.datasets import Dataset
from analysis.jobs.records import JobRecord, params_key
from analysis.jobs.runner import INTERACTIVE_PRIORITY, JobRequest
from analysis.runtime.handle import ModelInfo
from components.job_panel import job_outcome, job_progress, job_result, job_store, load_job, start_job, \
    start_problem
from components.share_links import DATABASE_ERRORS
from components.state import update_state


def exact_request(info: ModelInfo, state: dict) -> JobRequest:
    """The job computing the exact ablation importance of every head for the page's current options."""
    options = {"metric": state["metric"], "span": [int(state["span_start"]), int(state["span_end"])],
               "target": state["target"] if state["metric"] == "logprob" else "", "mode": state["method"]}
    return JobRequest("exact", state["model"], info.revision, Dataset("Head importance page", (state["text"],)),
                      options, int(state["max_tokens"]))


def _matching_job(request: JobRequest, state: dict) -> JobRecord | None:
    """The job of the link if it computes this request, else a running or finished job with the same parameters."""
    if state["job"]:
        record = load_job(state["job"])
        if record is not None and params_key(record.params) == params_key(request.params()):
            return record
        if record is None:
            st.warning(f"The link's job {state['job'][:16]} does not exist (it may be mistyped or in another "
                       "database).")
        update_state(job="")
    try:
        record = job_store().find(request.params())
    except DATABASE_ERRORS:
        return None
    if record is not None:
        update_state(job=record.id)
    return record


def exact_importance_panel(info: ModelInfo, state: dict) -> pd.DataFrame | None:
    """The exact result if its job is done; otherwise a Run button, or the running job's progress."""
    request = exact_request(info, state)
    record = _matching_job(request, state)
    if record is not None and record.status == "done":
        return job_result(record.id).drop(columns="row")
    if record is not None and record.active:
        job_progress(record.id)
        return None
    if record is not None:
        job_outcome(record)
    st.markdown(f"**Exact ablation** sets each of the {info.n_layers * info.n_heads} heads to "
                f"{'zero' if state['method'] == 'zero' else 'its reference mean'} in turn and measures the change.")
    st.button(f"Run exact ablation of all {info.n_layers * info.n_heads} heads", key="importance_run_exact",
              icon=":material/play_arrow:", type="primary", on_click=start_job,
              args=(request, INTERACTIVE_PRIORITY))
    start_problem()
    st.caption("It runs as a background job on the Dask workers (tens of seconds on a CPU), with progress, the "
               "time left and Cancel; the page stays usable, and the link reopens the result.")
    return None
