"""The datasets page in real Streamlit (AppTest): generate IOI pairs, run a sweep as a job, reopen it by its link.

The job runs on the embedded Dask cluster (worker processes started on first use); the page is re-run until
the job's record says it is done, as a browser's polling fragment would.
"""
from __future__ import annotations

from analysis.datasets.generators import ioi_dataset
from tests.app_support import messages, rerun_until, run_app

DATASETS = "pages/datasets.py"


def _finished(app) -> bool:
    return any(m.label == "Rows computed" for m in app.metric) or bool(app.error)


def _rows_table(app):
    """The knockout's per-row table (the one with a Δ loss column)."""
    return next(frame.value for frame in app.dataframe if "loss_delta" in frame.value.columns)


def test_generate_ioi_pairs_run_a_census_sweep_and_reopen_it_by_link(smollm2, job_database):
    app = run_app(DATASETS, ds_n="6", ds_seed="3")
    assert not app.exception and not messages(app)
    assert app.dataframe[0].value["target"].str.startswith(" ").all() and len(app.dataframe[0].value) == 6
    assert app.selectbox(key="w_sweep").value == "census"
    app.button(key="sweep_start").click().run()
    job = app.query_params["job"]
    assert len(job) == 16 and app.query_params["ds_n"] == "6"
    rerun_until(app, _finished)
    assert not app.error, messages(app)
    assert {m.label: m.value for m in app.metric}["Rows computed"] == "6 of 6"

    opened = run_app(DATASETS, job=job)  # a teammate with the link: the finished result at once
    assert not opened.exception and not messages(opened)
    assert opened.code[0].value.endswith(f"?job={job}")
    assert {m.label: m.value for m in opened.metric} == {"Rows computed": "6 of 6", "Heads": "30 × 9"}
    assert opened.selectbox(key="w_sweep_value").value == "previous_token"
    opened.selectbox(key="w_sweep_value").set_value("first_token").run()
    assert opened.query_params["sweep_value"] == "first_token"
    rows = opened.dataframe[0].value
    assert list(rows.columns) == ["row", "first_token", "text"] and len(rows) == 6


def test_a_row_is_opened_with_its_prompt_and_head(smollm2, job_database):
    app = run_app(DATASETS, ds_n="3", ds_seed="1")
    app.button(key="sweep_start").click().run()
    rerun_until(app, _finished)
    job = app.query_params["job"]
    opened = run_app(DATASETS, job=job, sweep_row="2", layer="4", head="7")
    assert "Row 2:" in " ".join(m.value for m in opened.markdown)
    opened.selectbox(key="sweep_open_page").set_value("head")
    opened.button(key="sweep_open_row").click().run()
    assert not opened.exception  # AppTest does not follow st.switch_page; the browser test does
    assert opened.query_params["layer"] == "4" and opened.query_params["head"] == "7"
    assert opened.query_params["text"] == ioi_dataset(3, seed=1).texts[2]


def test_a_running_sweep_can_be_cancelled_from_the_page(smollm2, job_database):
    app = run_app(DATASETS, ds_source="natural", ds_n="40", sweep="exact")
    app.button(key="sweep_start").click().run()
    job = app.query_params["job"]
    cancel = f"cancel_{job}"
    rerun_until(app, lambda a: any(b.key == cancel for b in a.button), timeout=60)
    app.button(key=cancel).click().run()
    rerun_until(app, lambda a: bool(a.warning), timeout=120)
    assert f"Job {job} was cancelled." in messages(app)


def test_bad_job_links_say_so(smollm2, job_database):
    app = run_app(DATASETS, job="AAAAAAAAAAAAAAAA")
    assert not app.exception and "There is no job AAAAAAAAAAAAAAAA" in messages(app)
    app = run_app(DATASETS, job="x" * 17)
    assert not app.exception and "Ignored the link's 'job'" in messages(app)


def _page_job(kind: str, dataset: str) -> str:
    """A failed job record with a dataset of one text (what a page's own job looks like), without running it."""
    from analysis.datasets import Dataset
    from analysis.jobs.runner import JobRequest
    from components.panels.job_panel import job_store

    params = JobRequest(kind, "smollm2-135m", "", Dataset(dataset, ("When Mary and John",)), {}, 256).params()
    job = job_store().create(kind, "smollm2-135m", params, 1)
    job_store().fail(job, "stopped for the test")
    return job


def test_a_page_job_is_linked_to_its_page_and_not_shown_as_a_one_row_sweep(smollm2, job_database):
    job = _page_job("exact", "Head importance page")
    app = run_app(DATASETS)
    links = list(app.dataframe[-1].value["job"])
    assert links == [f"/importance?job={job}"]  # Recent jobs open it where it was made
    opened = run_app(DATASETS, job=job)
    assert not opened.exception and "started on the Head importance page" in opened.info[0].value
    assert not any("rows" in s.value for s in opened.subheader)  # no "Mean delta over 1 rows"


def test_a_job_of_another_kind_in_a_page_link_is_announced_not_swapped(smollm2, job_database):
    job = _page_job("census", "IOI pairs")
    app = run_app("pages/importance.py", job=job)
    assert not app.exception
    assert f"The link's job {job} computes something else (Head census scores on IOI pairs)" in messages(app)


def test_a_knockout_sweep_of_pairs_shows_means_per_row_and_opens_a_row_in_the_lab(smollm2, job_database):
    app = run_app(DATASETS, ds_n="3", ds_seed="4", sweep="knockout", ablate="L1H5:zero:0,L2H1")
    assert not app.exception and not messages(app)
    app.text_input(key="w_ablate").set_value("L1H5, L9H1:resample:0").run()  # resampling reads each corrupted prompt
    app.button(key="sweep_start").click().run()
    rerun_until(app, lambda a: any(m.label == "Mean Δ loss" for m in a.metric) or bool(a.error))
    assert not app.exception and not messages(app)
    means = {m.label: float(m.value) for m in app.metric}
    assert set(means) == {"Mean Δ loss", "Mean Δ log-prob of the target token",
                          "Mean KL of the next-token distribution"}
    assert means["Mean Δ log-prob of the target token"] < 0  # knocking out IOI heads lowers " Mary"'s log-prob
    rows = _rows_table(app)
    targets = [p.target for p in ioi_dataset(3, 4).pairs]  # ' Mary': its leading space is shown, not hidden
    assert list(rows["row"]) == [0, 1, 2] and rows["target"].tolist() == [t.replace(" ", "␣", 1) for t in targets]
    assert all(target.startswith(" ") for target in targets)
    app.button(key="knockout_open_row").click().run()  # AppTest does not follow st.switch_page; the state shows it
    assert not app.exception
    assert app.query_params["ablate"] == "L1H5:zero:0,L9H1:resample:0"
    assert app.query_params["text"] == ioi_dataset(3, seed=4).texts[0]


def test_a_selection_that_cannot_be_swept_is_refused_with_its_reason(smollm2, job_database):
    app = run_app(DATASETS, ds_source="natural", ds_n="3", sweep="knockout", ablate="L1H5:resample:0")
    assert not app.exception and "sweep pair rows" in messages(app)
    assert not any(button.key == "sweep_start" for button in app.button)
    app.text_input(key="w_ablate").set_value("L99H0").run()
    assert "layer 99 does not exist" in messages(app)
