"""Datasets and jobs: sweep an analysis over many prompts as a background job; per-head means with 95 % intervals."""
import streamlit as st

from analysis.jobs.kinds import KINDS
from analysis.jobs.runner import JobRequest
from components.widgets.datasets import dataset_source, sweep_options
from components.navigation import page_file
from components.panels.job_panel import job_link, job_outcome, job_page, job_progress, load_job, rows_text, \
    start_job, start_problem
from components.panels.job_list import recent_jobs
from components.panels.job_results import sweep_results
from components.panels.knockout_results import knockout_results
from components.page import page_context

ctx = page_context()
info, state = ctx.handle.info, ctx.state
st.title("Datasets and jobs")

record = load_job(state["job"]) if state["job"] else None
if state["job"] and record is None:
    st.warning(f"There is no job {state['job']} in this server's database (the link may be mistyped or cut off).")
if record is not None and job_page(record):  # a page's own job (one text): its result is drawn on that page
    st.info(f"Job {record.id} was started on the {record.params['dataset']['name']}, which shows its result.")
    st.page_link(page_file(job_page(record)), label=f"Open it on the {record.params['dataset']['name']}",
                 icon=":material/open_in_new:")
elif record is not None:
    rows = len(record.params["dataset"]["rows"])
    st.subheader(f"{KINDS[record.kind].title if record.kind in KINDS else record.kind} on "
                 f"{record.params['dataset']['name']} · {rows_text(rows)} · {record.model}")
    st.caption("Anyone with this link sees this job and its result:")
    st.code(job_link(record), language=None)
    if record.active:
        job_progress(record.id)
    elif record.status == "done" and record.kind in KINDS and KINDS[record.kind].table == "rows":
        knockout_results(record, state)
    elif record.status == "done":
        sweep_results(record, state)
    else:
        job_outcome(record)

with st.expander("New sweep", expanded=record is None):
    st.caption(f"Rows are analysed with {info.name} (the sidebar's model) on the Dask workers, outside this page: "
               "you can keep working, and the job's link reopens its result for anyone.")
    dataset = dataset_source(ctx.handle, state)
    kind, options = sweep_options(dataset, info, state) if dataset is not None else ("", None)
    if options is not None:
        request = JobRequest(kind, info.name, info.revision, dataset, options, int(state["max_tokens"]))
        st.button(f"Start the sweep over {rows_text(len(dataset))}", key="sweep_start", type="primary",
                  icon=":material/play_arrow:", on_click=start_job, args=(request,),
                  kwargs={"sweep_row": -1, "sweep_value": ""})
    start_problem()
recent_jobs()
