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
