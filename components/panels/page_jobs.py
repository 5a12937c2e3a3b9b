"""Computations that a page runs on request as a background job: the importance page's exact ablation, the
patching page's exact head grid on long texts, and the circuits page's edge scores over a dataset of pairs.

A job's parameters are the page's model, text(s), token cap and options, so a job with the same parameters
(started earlier, or by a teammate) is reused, and ``?job=<id>`` in the page's link reopens it.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from analysis.datasets import Dataset, PairRow
from analysis.datasets.generators import ioi_dataset
from analysis.jobs.kinds import KINDS
from analysis.jobs.records import JobRecord, params_key
from analysis.jobs.runner import INTERACTIVE_PRIORITY, JobRequest
from analysis.runtime.handle import ModelInfo
from components.panels.job_panel import IMPORTANCE_JOBS, PATCHING_JOBS, job_outcome, job_progress, job_result, \
    job_store, load_job, start_job, start_problem
from components.share_links import DATABASE_ERRORS
from components.state import get_state, update_state

_SHOWN = "atlas_page_jobs_shown"  # ids of the jobs this session has shown as a page's own result


def exact_importance_request(info: ModelInfo, state: dict) -> JobRequest:
    """The job computing the exact ablation importance of every head for the page's current options."""
    options = {"metric": state["metric"], "span": [int(state["span_start"]), int(state["span_end"])],
               "target": state["target"] if state["metric"] == "logprob" else "", "mode": state["method"]}
    return JobRequest("exact", state["model"], info.revision, Dataset(IMPORTANCE_JOBS, (state["text"],)),
                      options, int(state["max_tokens"]))


def exact_patching_request(info: ModelInfo, state: dict) -> JobRequest:
    """The job patching every head alone between the page's clean and corrupted prompts."""
    pair = PairRow(state["text"], state["compare_text"], state["patch_target"], state["patch_distractor"])
    options = {"metric": state["patch_metric"], "direction": state["patch_direction"]}
    return JobRequest("patching", state["model"], info.revision, Dataset(PATCHING_JOBS, (pair.clean,), (pair,)),
                      options, int(state["max_tokens"]))


def circuit_dataset_request(info: ModelInfo, state: dict, method: str, steps: int) -> JobRequest:
    """The job scoring every edge with ``method`` on each of the IOI pairs that ``ds_n`` and ``ds_seed`` generate
    (the datasets page's IOI rows: the same job whichever page starts it)."""
    options = {"method": method, "steps": steps, "metric": state["patch_metric"]}
    return JobRequest("circuit", state["model"], info.revision, ioi_dataset(int(state["ds_n"]), int(state["ds_seed"])),
                      options, int(state["max_tokens"]))


def _shown(record: JobRecord) -> JobRecord:
    st.session_state.setdefault(_SHOWN, set()).add(record.id)
    return record


def _matching_job(request: JobRequest, state: dict,
                  accept: Callable[[JobRecord], bool] | None = None) -> JobRecord | None:
    """The job of the link if it computes this request (or ``accept`` takes it), else a running or finished job with
    the same parameters. A link's job that computes something else is announced, unless this session has shown it
    here before."""
    if state["job"]:
        record = load_job(state["job"])
        if record is not None and (params_key(record.params) == params_key(request.params())
                                   or accept is not None and accept(record)):
            return _shown(record)
        if state["job"] in st.session_state.get(_SHOWN, ()):
            pass  # the page's options changed since it was shown: nothing to announce, it just goes
        elif record is None:
            st.warning(f"The link's job {state['job'][:16]} does not exist (it may be mistyped or in another "
                       "database).")
        else:
            st.warning(f"The link's job {record.id} computes something else ({KINDS[record.kind].title if record.kind in KINDS else record.kind} on "
                       f"{record.params['dataset']['name']}), not this page's result; it is not shown here.")
        update_state(job="")
    try:
        record = job_store().find(request.params())
    except DATABASE_ERRORS:
        return None
    if record is not None:
        update_state(job=record.id)
        _shown(record)
    return record


def page_job(request: JobRequest, what: str, button: str, key: str,
             accept: Callable[[JobRecord], bool] | None = None) -> JobRecord | None:
    """The job's record if it is done; otherwise a Run button (with ``what`` it computes above it), or the running
    job's progress. ``accept`` may take the link's job although it differs from ``request``."""
    record = _matching_job(request, get_state(), accept)
    if record is not None and record.status == "done":
        return record
    if record is not None and record.active:
        job_progress(record.id)
        return None
    if record is not None:
        job_outcome(record)
    st.markdown(what)
    st.button(button, key=key, icon=":material/play_arrow:", type="primary", on_click=start_job,
              args=(request, INTERACTIVE_PRIORITY))
    start_problem()
    st.caption("It runs as a background job on the Dask workers, with progress, the time left and Cancel; the page "
               "stays usable, and the link reopens the result.")
    return None


def page_job_panel(request: JobRequest, what: str, button: str, key: str) -> pd.DataFrame | None:
    """The job's per-head result if it is done; otherwise a Run button (with ``what`` it computes above it), or
    the running job's progress."""
    record = page_job(request, what, button, key)
    return None if record is None else job_result(record.id).drop(columns="row")
