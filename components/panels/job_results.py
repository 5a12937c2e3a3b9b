"""A finished sweep: per-head means with 95 % intervals, one head's values over the rows, rows to open, downloads;
for a circuit job, every edge's mean score with its 95 % interval, ranked, and the way to its circuit."""
from __future__ import annotations

import io

import pandas as pd
import streamlit as st

from analysis.datasets import Dataset
from analysis.jobs.kinds import KINDS
from analysis.jobs.records import JobRecord
from analysis.methods.aggregate import CONFIDENCE, head_summary, head_values
from components.figures.grids import importance_grid
from components.figures.datasets import interval_figure, row_distribution, summary_hover
from components.widgets.head_picker import head_grid
from components.figures.grids import add_head_click_layer
from components.panels.job_panel import edge_job_table, job_result, rows_text
from components.navigation import PAGES, page_file
from components.state import bind, carry_to_next_page, update_state

_OPEN_PAGE = "atlas_sweep_open_page"


def downloads(frame: pd.DataFrame, stem: str, label: str, formats: tuple[str, ...]) -> None:
    """One download button per format ("csv", "json", "parquet") for a table."""
    columns = st.columns(len(formats))
    for column, kind in zip(columns, formats):
        if kind == "csv":
            data, mime = frame.to_csv(index=False), "text/csv"
        elif kind == "json":
            data, mime = frame.to_json(orient="records", indent=1), "application/json"
        else:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            data, mime = buffer.getvalue(), "application/vnd.apache.parquet"
        with column:
            st.download_button(f"{label} ({kind.upper()})", data, file_name=f"{stem}.{kind}", mime=mime,
                               key=f"download_{stem}_{kind}", icon=":material/download:")


def row_state(record: JobRecord, dataset: Dataset, row: int) -> dict:
    """The view state that opens one row of the sweep on any page: its model, prompt (and pair) and token cap."""
    changes = {"model": record.model, "text": dataset.texts[row], "max_tokens": int(record.params["max_tokens"]),
               "token": -1}
    if dataset.has_pairs:
        pair = dataset.pairs[row]
        changes.update(compare_text=pair.corrupted, target=pair.target, patch_target=pair.target,
                       patch_distractor=pair.distractor)
    return changes


def open_page(changes: dict, page: str) -> None:
    """Button callback: apply ``changes`` to the view state and go to ``page`` on the next run."""
    update_state(**changes)
    st.session_state[_OPEN_PAGE] = page


def follow_open_page() -> None:
    """Go to the page a button asked for (a callback cannot switch pages itself)."""
    if _OPEN_PAGE in st.session_state:
        st.switch_page(page_file(st.session_state.pop(_OPEN_PAGE)))


def _open_row(record: JobRecord, dataset: Dataset, row: int, layer: int, head: int) -> None:
    st.markdown(f"**Row {row}:** {dataset.texts[row]}")
    if dataset.has_pairs:
        pair = dataset.pairs[row]
        st.caption(f"Corrupted: {pair.corrupted} · target {pair.target!r} · distractor {pair.distractor!r}")
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left:
        page = st.selectbox("Open this row in", [key for *_, key in PAGES if key != "datasets"],
                            format_func={key: title for _, title, _, key in PAGES}.get, key="sweep_open_page")
    with right:
        st.button("Open the row", key="sweep_open_row", icon=":material/open_in_new:", on_click=open_page,
                  args=({**row_state(record, dataset, row), "layer": layer, "head": head}, page))


def row_errors(record: JobRecord) -> None:
    """The rows a job could not compute, with the reasons, in an expander (nothing if every row was computed)."""
    if record.row_errors:
        with st.expander(f"{len(record.row_errors)} row(s) could not be computed"):
            st.markdown("\n".join(f"- row {error['row']}: {error['message']}" for error in record.row_errors[:50]))


def _open_circuit(record: JobRecord, dataset: Dataset) -> None:
    """Open the circuits page on the job's first scored pair with its circuit chosen from the job's mean scores."""
    options, failed = record.params["options"], {error["row"] for error in record.row_errors}
    first = next(row for row in range(len(dataset)) if row not in failed)
    changes = {**row_state(record, dataset, first), "circuit_scores": "dataset",
               "circuit_method": options.get("method", "eap"), "patch_metric": options.get("metric", "logit_diff")}
    if options.get("method") == "eap-ig":
        changes["circuit_steps"] = int(options.get("steps", 5))
    carry_to_next_page(job=record.id)
    open_page(changes, "circuits")


def edge_results(record: JobRecord) -> None:
    """A finished circuit job: every edge's mean score over the rows with its 95 % interval, ranked by |mean|; the
    downloads; a button opening the circuits page on the first pair with the circuit of the mean scores."""
    dataset = Dataset.from_dict(record.params["dataset"])
    summary = edge_job_table(record.id, record.model)
    computed = len(dataset) - len(record.row_errors)
    top = st.columns(3)
    top[0].metric("Rows computed", f"{computed:,} of {len(dataset):,}")
    top[1].metric("Edges", f"{len(summary):,}")
    top[2].metric("Method", record.params["options"].get("method", "eap").upper())
    row_errors(record)
    ranked = summary.rename(columns={"score": "mean"})
    ranked = ranked.reindex(ranked["mean"].abs().sort_values(ascending=False, kind="stable").index)
    st.subheader("Edges ranked by |mean score|")
    st.dataframe(ranked.head(500)[["source", "target", "input", "mean", "ci_low", "ci_high", "n"]], hide_index=True,
                 width="stretch", height=320)
    st.caption(f"Each edge's score (the estimated change of the raw metric when that edge alone is patched from the "
               f"corrupted prompt) averaged over {rows_text(computed)}, with Student's t {CONFIDENCE:.0%} interval; "
               "the first 500 shown, every edge in the downloads.")
    st.button("Open the circuit of the mean scores on the circuits page", key="sweep_open_circuits",
              icon=":material/hub:", on_click=_open_circuit, args=(record, dataset),
              help="The circuits page with the first scored pair as its prompts and its circuit chosen from these "
                   "mean scores; faithfulness is measured on that pair.")
    st.subheader("Downloads")
    stem = f"{record.kind}-{record.id}"
    downloads(ranked, f"{stem}-per-edge", "Per-edge mean scores", ("csv", "json", "parquet"))
    downloads(job_result(record.id), f"{stem}-rows", "Every row × edge (edge index in the graph's order)",
               ("parquet",))


def sweep_results(record: JobRecord, state: dict) -> None:
    """The finished job's grids, the selected head's distribution over rows, the rows and the downloads."""
    follow_open_page()
    if KINDS[record.kind].table == "edges":
        edge_results(record)
        return
    rows = job_result(record.id)
    dataset = Dataset.from_dict(record.params["dataset"])
    values = [value for value in KINDS[record.kind].values if value in rows.columns and rows[value].notna().any()]
    n_layers, n_heads = int(rows["layer"].max()) + 1, int(rows["head_index"].max()) + 1
    top = st.columns([2, 1, 1])
    with top[0]:
        value = state["sweep_value"] if state["sweep_value"] in values else values[0]
        bind(st.selectbox, "sweep_value", "Value", options=values, index=values.index(value))
        value = state["sweep_value"] if state["sweep_value"] in values else values[0]
    computed = rows["row"].nunique()
    top[1].metric("Rows computed", f"{computed:,} of {len(dataset):,}")
    top[2].metric("Heads", f"{n_layers} × {n_heads}")
    row_errors(record)

    summary = head_summary(rows, value)
    signed = bool((summary["mean"] < 0).any())
    left, right = st.columns(2)
    with left:
        picked = head_grid(add_head_click_layer(
            importance_grid(summary, "mean", f"Mean {value} over {rows_text(computed)} (click a head)", signed),
            n_layers, n_heads, summary_hover(summary, value), marker_size=14,
            click_action="click to see its value on every row"), key="sweep_mean_grid")
    with right:
        intervals, widths = st.tabs(["95 % intervals", "Interval width"])
        with intervals:
            st.plotly_chart(interval_figure(summary, value), config={"displayModeBar": False}, key="sweep_intervals")
        with widths:
            st.plotly_chart(importance_grid(summary, "ci_half", f"Half-width of the {CONFIDENCE:.0%} interval",
                                            signed=False), config={"displayModeBar": False}, key="sweep_widths")
    if picked is not None:
        update_state(layer=picked[0], head=picked[1])
    layer = int(state["layer"]) if state["layer"] < n_layers else 0
    head = int(state["head"]) if state["head"] < n_heads else 0
    label = f"L{layer}H{head}"
    line = summary.iloc[layer * n_heads + head]
    per_row = head_values(rows, label, value)
    st.subheader(f"{label} over the rows")
    st.plotly_chart(row_distribution(per_row, value, label, list(dataset.texts), line["mean"],
                                     (line["ci_low"], line["ci_high"])),
                    config={"displayModeBar": False}, key="sweep_distribution")
    table = per_row.assign(text=[dataset.texts[row] for row in per_row["row"]])
    st.caption("Pick a row to open its prompt on any page.")
    event = st.dataframe(table, hide_index=True, width="stretch", height=260, on_select="rerun",
                         selection_mode="single-row", key="sweep_rows_table")
    chosen = event.selection.rows if event is not None else []
    if chosen:
        update_state(sweep_row=int(table["row"].iloc[chosen[0]]))
    if 0 <= state["sweep_row"] < len(dataset):
        _open_row(record, dataset, int(state["sweep_row"]), layer, head)

    st.subheader("Downloads")
    stem = f"{record.kind}-{record.id}"
    downloads(summary.assign(value=value), f"{stem}-{value}-per-head", f"Per-head {value}", ("csv", "json", "parquet"))
    downloads(rows, f"{stem}-rows", "Every row × head", ("csv", "parquet"))
