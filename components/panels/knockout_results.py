"""A finished knockout sweep: each metric's mean change over the rows with its 95 % interval, every row's value,
the rows (each opens in the ablation lab with the selection) and downloads."""
from __future__ import annotations

import numpy as np
import streamlit as st

from analysis.datasets import Dataset
from analysis.jobs.records import JobRecord
from analysis.methods.aggregate import CONFIDENCE, value_summary
from analysis.methods.knockout import KNOCKOUT_VALUES
from analysis.methods.metrics import METRICS
from analysis.runtime.tokens import visible_token
from components.figures.datasets import row_distribution
from components.panels.job_panel import job_result, rows_text
from components.panels.job_results import downloads, follow_open_page, open_page, row_errors, row_state
from components.state import bind, update_state

INTERVAL = f"{CONFIDENCE * 100:g} % interval"
ROW_COLUMNS = ("row", "text", "tokens", "target", "loss_clean", "loss_edited", "loss_delta", "logprob_clean",
               "logprob_edited", "logprob_delta", "kl")


def _label(value: str) -> str:
    return METRICS[KNOCKOUT_VALUES[value]]


def _number(value: str, number: float) -> str:
    """A delta with its sign; the KL (never negative) without."""
    return f"{number:.4f}" if value == "kl" else f"{number:+.4f}"


def _interval(line) -> str:
    if not np.isfinite(line.ci_half):
        return "none (one row)"
    return f"[{_number(line.value, line.ci_low)}, {_number(line.value, line.ci_high)}]"


def knockout_results(record: JobRecord, state: dict, in_lab: bool = False) -> None:
    """The finished job's means with intervals, the distribution over rows, the rows and the downloads; a row opens
    in the lab (``in_lab``: the lab showing this, which then shows the row above)."""
    follow_open_page()
    rows = job_result(record.id)
    dataset = Dataset.from_dict(record.params["dataset"])
    selection = record.params["options"]["selection"]
    values = [value for value in KNOCKOUT_VALUES if rows[value].notna().any()]
    summary = value_summary(rows, values)
    st.markdown(f"**{selection}** on {rows_text(len(rows))} of {dataset.name}"
                + ("" if dataset.has_pairs else " (log-prob of each text's clean top prediction)"))
    cards = st.container(horizontal=True, gap="large")
    for line in summary.itertuples():
        cards.metric(f"Mean {_label(line.value)}", _number(line.value, line.mean), width="content",
                     help=f"Over {rows_text(line.n)}; {INTERVAL} {_interval(line)} (Student's t).")
    st.caption(f"{INTERVAL}s of the mean (n = {len(rows)}): "
               + " · ".join(f"{_label(line.value)} {_interval(line)}" for line in summary.itertuples()))
    row_errors(record)

    value = state["sweep_value"] if state["sweep_value"] in values else values[0]
    bind(st.selectbox, "sweep_value", "Value over the rows", options=values, index=values.index(value),
         format_func=_label)
    value = state["sweep_value"] if state["sweep_value"] in values else values[0]
    line = summary.set_index("value").loc[value]
    label = _label(value)
    st.plotly_chart(row_distribution(rows[["row", value]].dropna().rename(columns={value: label}), label,
                                     selection[:40], list(dataset.texts), line["mean"],
                                     (line["ci_low"], line["ci_high"])),
                    config={"displayModeBar": False}, key="knockout_distribution")
    table = rows.assign(text=[dataset.texts[row] for row in rows["row"]])[list(ROW_COLUMNS)]
    st.caption("Pick a row to open its prompt in the lab with this selection.")
    shown = table.assign(target=table["target"].map(visible_token))  # ' Mary' as '␣Mary'; downloads keep it raw
    event = st.dataframe(shown, hide_index=True, width="stretch", height=260, on_select="rerun",
                         selection_mode="single-row", key="knockout_rows_table")
    if event is not None and event.selection.rows:
        update_state(sweep_row=int(table["row"].iloc[event.selection.rows[0]]))
    row = int(state["sweep_row"]) if state["sweep_row"] in set(rows["row"]) else int(rows["row"].iloc[0])
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(f"**Row {row}:** {dataset.texts[row]}")
    if in_lab:  # the lab shows this job because its selection is the lab's
        right.button(f"Show row {row} above", key="knockout_open_row", icon=":material/north:", on_click=update_state,
                     kwargs=row_state(record, dataset, row))
    else:
        right.button(f"Open row {row} in the lab", key="knockout_open_row", icon=":material/open_in_new:",
                     on_click=open_page, args=({**row_state(record, dataset, row), "ablate": selection}, "lab"))

    stem = f"knockout-{record.id}"
    downloads(table, f"{stem}-rows", "Every row", ("csv", "json"))
    downloads(summary, f"{stem}-summary", "Means and intervals", ("csv", "json"))
