"""The circuits page's "Over a dataset" section: every edge's score on each of N generated IOI pairs (Wang et al.
2022's templates) as a background job, and the choice of the page's circuit from the pair's own scores or from the
dataset's mean scores (Syed et al. 2023 and Hanna et al. 2024 choose IOI circuits from scores averaged over pairs).
"""
from __future__ import annotations

import streamlit as st

from analysis.datasets.generators import MAX_GENERATED_ROWS
from analysis.jobs.kinds import KINDS
from analysis.jobs.records import JobRecord
from analysis.methods.edge_attribution import SCORE_METHODS
from analysis.methods.patching_metric import PATCHING_METRICS
from analysis.runtime.handle import ModelInfo
from components.caches.circuits import DatasetScores
from components.panels.job_panel import edge_job_table
from components.panels.page_jobs import circuit_dataset_request, page_job
from components.state import bind, update_state

SOURCES = {"pair": "this pair's own scores", "dataset": "the mean scores over the dataset"}


def job_method(record: JobRecord) -> str:
    """What a circuit job scored: 'EAP-IG (5 steps), logit difference (target − distractor)'."""
    options = record.params["options"]
    method = SCORE_METHODS.get(options.get("method", "eap"), options.get("method", "eap")).split(" (")[0]
    steps = f" ({options.get('steps', 5)} steps)" if options.get("method") == "eap-ig" else ""
    return f"{method}{steps}, {PATCHING_METRICS.get(options.get('metric', 'logit_diff'), options.get('metric'))}"


def _accept(model: str):
    return lambda record: record.kind == "circuit" and record.model == model


def _size_inputs(state: dict) -> None:
    columns = st.columns(2)
    with columns[0]:
        bind(st.number_input, "ds_n", "IOI pairs", min_value=1, max_value=MAX_GENERATED_ROWS,
             value=int(state["ds_n"]), help="How many generated IOI pairs to score (the datasets page's rows).")
    with columns[1]:
        bind(st.number_input, "ds_seed", "Seed", min_value=0, value=int(state["ds_seed"]),
             help="The same seed gives the same pairs, so the link reproduces them.")


def dataset_scores_section(info: ModelInfo, state: dict, method: str, steps: int) -> DatasetScores | None:
    """The section's inputs and job; returns the dataset's mean scores if the page's circuit should use them."""
    record = None
    with st.expander("Over a dataset", expanded=bool(state["job"]) or state["circuit_scores"] == "dataset"):
        _size_inputs(state)
        request = circuit_dataset_request(info, state, method, steps)
        record = page_job(request, f"Score every edge ({SCORE_METHODS[method]}) on each of the "
                                   f"{len(request.dataset):,} generated IOI pairs ({request.dataset.name}), each "
                                   "with its own target and distractor; the mean over the pairs then chooses the "
                                   "circuit.",
                          "Score the edges over the dataset", "circuit_dataset_run", accept=_accept(state["model"]))
        if record is not None:
            _describe(record, same_request=record.params == request.params())
        bind(st.radio, "circuit_scores", "Choose the circuit from", options=list(SOURCES), format_func=SOURCES.get,
             index=list(SOURCES).index(state["circuit_scores"]), horizontal=True, disabled=record is None,
             help="The dataset's mean scores drive the graph, the edge table, the edge slider and the faithfulness "
                  "on this page's pair.")
    if state["circuit_scores"] != "dataset":
        return None
    if record is None:
        st.info("The circuit uses this pair's own scores until a circuit job over a dataset has finished (see "
                "\"Over a dataset\").")
        return None
    st.caption(f"The circuit is chosen from the mean edge scores of job {record.id}: {job_method(record)}, over "
               f"{record.params['dataset']['name']}; faithfulness is measured on this page's pair.")
    return DatasetScores(record.id, edge_job_table(record.id, record.model))


def _describe(record: JobRecord, same_request: bool) -> None:
    rows = len(record.params["dataset"]["rows"])
    computed = rows - len(record.row_errors)
    st.success(f"Job {record.id} ({KINDS['circuit'].title}): {job_method(record)} on {record.params['dataset']['name']}"
               f" · {computed} of {rows:,} pairs scored.")
    if not same_request:
        st.caption("This is the link's job; the inputs above (and the page's method and metric) describe another one: "
                   "\"Score another dataset\" starts or finds that.")
    if record.row_errors:
        first = record.row_errors[0]
        st.caption(f"{len(record.row_errors)} pair(s) could not be scored, e.g. row {first['row']}: "
                   f"{first['message'][:300]}")
    st.button("Score another dataset", key="circuit_dataset_new", on_click=update_state, kwargs={"job": ""},
              help="Forget this job on this page: the inputs above then start (or find) the matching job.")
