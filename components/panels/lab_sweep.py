"""The ablation lab's "test this selection on many prompts": the selection knocked out on every row of a dataset,
as a background job of the page (``components.panels.page_jobs``), with the mean change and its 95 % interval."""
from __future__ import annotations

import streamlit as st

from analysis.datasets import Dataset
from analysis.heads import HeadSpecError
from analysis.jobs.runner import JobRequest
from analysis.methods.ablation_spec import format_ablation
from analysis.methods.knockout import knockout_selection
from analysis.runtime.handle import ModelHandle, ModelInfo
from analysis.runtime.interventions import HeadIntervention
from components.caches.ablation import Selection
from components.panels.job_panel import rows_text
from components.panels.knockout_results import knockout_results
from components.panels.page_jobs import page_job
from components.widgets.datasets import dataset_source

TITLE = "Test this selection on many prompts"


def knockout_request(info: ModelInfo, state: dict, dataset: Dataset, selection: list[HeadIntervention]) -> JobRequest:
    """The job knocking ``selection`` (checked by ``knockout_selection``, so the same heads typed differently are
    spelled alike and reuse one job) out on every row of ``dataset``."""
    return JobRequest("knockout", state["model"], info.revision, dataset, {"selection": format_ablation(selection)},
                      int(state["max_tokens"]))


def lab_sweep(handle: ModelHandle, state: dict, selection: Selection) -> None:
    """The section: pick a dataset, start the sweep, follow it, and see its result when it is done."""
    info = handle.info
    with st.expander(TITLE, expanded=bool(state["job"]), icon=":material/dataset:"):
        if not info.causal:
            st.info("The sweep measures next-token loss and log-probs: it needs a causal language model.")
            return
        st.caption("The same selection on every row of a dataset: the clean and edited loss over each text, the "
                   "log-prob of the target (each pair row's target, else the clean top prediction) and the KL, with "
                   "the mean change and its 95 % interval over the rows. Resampled heads read each pair row's "
                   "corrupted prompt.")
        dataset = dataset_source(handle, state)
        if dataset is None:
            return
        try:
            checked = knockout_selection(format_ablation(list(selection)), info.n_layers, info.n_heads,
                                         dataset.has_pairs)
        except HeadSpecError as error:
            st.error(str(error))
            return
        request = knockout_request(info, state, dataset, checked)
        done = page_job(request, f"Knock out **{request.options['selection']}** on each of the "
                                 f"{rows_text(len(dataset))} of {dataset.name}.",
                        f"Start the sweep over {rows_text(len(dataset))}", "lab_sweep_start")
        if done is not None:
            knockout_results(done, state, in_lab=True)
