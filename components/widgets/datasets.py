"""Choosing a dataset (a generator bound to the URL, or an uploaded file) and what a sweep computes over it."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from analysis.datasets import Dataset, DatasetError
from analysis.datasets.generators import GENERATORS, MAX_GENERATED_ROWS, generate_dataset
from analysis.datasets.natural_text import NATURAL_SENTENCES
from analysis.datasets.parsing import MAX_ROW_CHARS, MAX_ROWS, MAX_UPLOAD_BYTES, parse_dataset
from analysis.heads import HeadSpecError
from analysis.jobs.kinds import KINDS, available_kinds
from analysis.methods.ablation_spec import format_ablation
from analysis.methods.knockout import knockout_selection
from analysis.methods.edge_attribution import MAX_STEPS, SCORE_METHODS
from analysis.methods.patching_metric import PATCHING_METRICS
from analysis.runtime.handle import ModelHandle, ModelInfo
from components.widgets.metrics import ablation_mode_choice, metric_choice
from components.state import bind

SOURCES = {**GENERATORS, "upload": "Upload CSV or JSONL"}
SHOWN_PROBLEMS = 20
UPLOAD_HELP = (f"CSV with a header row, or JSONL with one object per line. Columns/keys: `text`, or `clean`, "
               f"`corrupted`, `target`, `distractor` for patching pairs. At most {MAX_UPLOAD_BYTES // 1_000_000} MB, "
               f"{MAX_ROWS:,} rows and {MAX_ROW_CHARS:,} characters per field; bad rows are listed and left out.")


def _generator_options(source: str, state: dict) -> None:
    columns = st.columns(3)
    limit = len(NATURAL_SENTENCES) if source == "natural" else MAX_GENERATED_ROWS
    with columns[0]:
        bind(st.number_input, "ds_n", "Seeds" if source == "repeat" else "Rows", min_value=1, max_value=limit,
             value=min(int(state["ds_n"]), limit), help=f"How many rows to generate (at most {limit:,}).")
    if source == "natural":
        return
    with columns[1]:
        bind(st.number_input, "ds_seed", "First seed" if source == "repeat" else "Seed", min_value=0,
             value=int(state["ds_seed"]), help="The same seed gives the same rows, so the link reproduces them.")
    if source == "repeat":
        with columns[2]:
            bind(st.number_input, "ds_length", "Tokens per repeat", min_value=2, max_value=200,
                 value=int(state["ds_length"]), help="Random tokens written twice (the induction probe).")


def _uploaded_dataset() -> Dataset | None:
    upload = st.file_uploader("Dataset file", type=["csv", "jsonl"], key="ds_upload", help=UPLOAD_HELP,
                              max_upload_size=MAX_UPLOAD_BYTES // 1_000_000)
    if upload is None:
        st.caption(UPLOAD_HELP)
        return None
    try:
        parsed = parse_dataset(upload.name, upload.getvalue())
    except DatasetError as error:
        st.error(str(error))
        return None
    if parsed.problems:
        lines = "\n".join(f"- {problem}" for problem in parsed.problems[:SHOWN_PROBLEMS])
        more = len(parsed.problems) - SHOWN_PROBLEMS
        st.warning(f"{len(parsed.problems)} row{'s' if len(parsed.problems) > 1 else ''} left out; the "
                   f"{len(parsed.dataset):,} good rows are kept.\n\n{lines}" + (f"\n\n…and {more} more." if more > 0
                                                                                 else ""))
    return parsed.dataset


def dataset_source(handle: ModelHandle, state: dict) -> Dataset | None:
    """The dataset the user picked (generated from the URL's options, or uploaded), previewed; None if none yet."""
    bind(st.radio, "ds_source", "Rows from", options=list(SOURCES), index=list(SOURCES).index(state["ds_source"]),
         format_func=SOURCES.get, horizontal=True,
         help="IOI pairs: templates × name pairs (Wang et al. 2022), with a corrupted prompt, target and "
              "distractor per row. Repeated random tokens: the induction probe (Olsson et al. 2022), one per seed. "
              "Natural text: everyday sentences written for this project.")
    source = state["ds_source"]
    if source == "upload":
        dataset = _uploaded_dataset()
    else:
        _generator_options(source, state)
        try:
            dataset = generate_dataset(source, int(state["ds_n"]), int(state["ds_seed"]), int(state["ds_length"]),
                                       handle.tokenizer)
        except (DatasetError, ValueError) as error:
            st.error(str(error))
            return None
    if dataset is not None:
        st.caption(f"{dataset.name}: {len(dataset):,} rows" + (" (the first 200 shown)" if len(dataset) > 200 else ""))
        st.dataframe(pd.DataFrame(dataset.rows()).head(200), width="stretch", height=180)
    return dataset


def _knockout_options(dataset: Dataset, info: ModelInfo, state: dict) -> dict[str, Any] | None:
    """The lab selection a knockout sweep applies (shared with the lab's ``ablate``); None with a message if it
    cannot be swept."""
    bind(st.text_input, "ablate", "Heads (as in the ablation lab)", value=state["ablate"],
         placeholder="e.g. L1H5:zero:0, L3H*:mean:0, L9H2:stream:64",
         help="The ablation lab's selection: heads written L{layer}H{head} (L3H* = the whole layer), each with an "
              "optional mode and scale (zero, mean, scale, resample, stream). Resampled heads read each pair row's "
              "corrupted prompt.")
    try:
        selection = knockout_selection(state["ablate"], info.n_layers, info.n_heads, dataset.has_pairs)
    except HeadSpecError as error:
        st.error(str(error))
        return None
    return {"selection": format_ablation(selection)}


def sweep_options(dataset: Dataset, info: ModelInfo, state: dict) -> tuple[str, dict[str, Any] | None]:
    """The sweep kind that fits the dataset and the model, and its options (metric, ablation mode or direction,
    the lab selection); None if the options cannot be used (the reason is shown)."""
    kinds = available_kinds(dataset.has_pairs, info.causal)
    kind = state["sweep"] if state["sweep"] in kinds else kinds[0]
    bind(st.selectbox, "sweep", "Compute per row", options=kinds, index=kinds.index(kind),
         format_func=lambda name: KINDS[name].title)
    st.caption(KINDS[kind].help)
    if KINDS[kind].uses_metric:
        left, right = st.columns([3, 2])
        with left:
            metric_choice(state)
        with right:
            ablation_mode_choice(state)
        st.caption("The loss is taken over each whole text; the log-prob target is each pair row's target, or "
                   "else the clean model's top prediction.")
        return kind, {"metric": state["metric"], "span": [0, 0], "target": "", "mode": state["method"]}
    if kind == "patching":
        left, right = st.columns(2)
        with left:
            _pair_metric_choice(state)
        with right:
            bind(st.radio, "patch_direction", "Direction", options=["denoise", "noise"],
                 index=["denoise", "noise"].index(state["patch_direction"]), horizontal=True,
                 help="Denoise: clean activations into the corrupted run. Noise: corrupted into the clean run.")
        return kind, {"metric": state["patch_metric"], "direction": state["patch_direction"]}
    if kind == "circuit":
        return kind, circuit_options(state)
    if kind == "knockout":
        return kind, _knockout_options(dataset, info, state)
    return kind, {}


def _pair_metric_choice(state: dict) -> None:
    bind(st.radio, "patch_metric", "Metric", options=list(PATCHING_METRICS),
         index=list(PATCHING_METRICS).index(state["patch_metric"]), format_func=PATCHING_METRICS.get,
         horizontal=True, help="Measured with each row's own target and distractor.")


def circuit_options(state: dict) -> dict[str, Any]:
    """The circuit kind's options: the edge score method, its integration steps and the metric (the circuits
    page's fields, so the same job is found from either page)."""
    columns = st.columns([2, 1, 3])
    with columns[0]:
        bind(st.radio, "circuit_method", "Edge scores", options=list(SCORE_METHODS), format_func=SCORE_METHODS.get,
             index=list(SCORE_METHODS).index(state["circuit_method"]))
    with columns[1]:
        bind(st.number_input, "circuit_steps", "EAP-IG steps", min_value=1, max_value=MAX_STEPS,
             value=int(state["circuit_steps"]), disabled=state["circuit_method"] != "eap-ig")
    with columns[2]:
        _pair_metric_choice(state)
    steps = int(state["circuit_steps"]) if state["circuit_method"] == "eap-ig" else 1
    return {"method": state["circuit_method"], "steps": steps, "metric": state["patch_metric"]}
