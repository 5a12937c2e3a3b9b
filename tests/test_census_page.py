"""The census page in real Streamlit (AppTest) and in Chromium: grid, thresholds, table, click-through."""
from __future__ import annotations

import pytest

from tests.browser_support import click_head_in_grid, running_app, wait_for_app
from tests.app_support import messages, run_app

CENSUS = "pages/census.py"


def test_census_page_summarises_and_lists_every_head(smollm2):
    app = run_app(CENSUS)
    assert not app.exception and not messages(app)
    assert "induction heads (L18H6" in app.info[0].value
    table = app.dataframe[0].value
    assert len(table) == 270 and {"induction", "label", "first_token"} <= set(table.columns)


def test_thresholds_and_label_filter_come_from_the_link(smollm2):
    app = run_app(CENSUS, th_induction="0.1", census_labels="induction", census_score="label")
    assert not app.exception
    strict = run_app(CENSUS, th_induction="0.6", census_labels="induction")
    loose_count, strict_count = len(app.dataframe[0].value), len(strict.dataframe[0].value)
    assert loose_count > strict_count >= 1
    assert set(app.dataframe[0].value["label"]) == {"induction"}
    app.slider(key="w_th_induction").set_value(0.95).run()
    assert app.query_params["th_induction"] == "0.95"
    assert len(app.dataframe[0].value) == 0  # no head passes 0.95; the filter still holds


@pytest.mark.parametrize("params, expected", [
    ({"census_score": "<script>"}, "Ignored the link's 'census_score'"),
    ({"probe_len": "100000"}, "Ignored the link's 'probe_len'"),
    ({"th_sink": "nan"}, "Ignored the link's 'th_sink'"),
    ({"census_labels": "<b>bold</b>,induction"}, ""),
])
def test_bad_census_links_fall_back_with_a_message(smollm2, params, expected):
    app = run_app(CENSUS, **params)
    assert not app.exception
    assert expected in messages(app)
    assert len(app.dataframe) == 1


def test_encoder_census_shows_cls_heads(minilm):
    app = run_app(CENSUS, model="minilm-l6", text="The cat sat on the mat. It purred, and then it slept.")
    assert not app.exception
    assert "[CLS] heads" in app.info[0].value


@pytest.mark.browser
def test_deep_link_to_census_then_click_a_head(browser, artifacts_dir):
    """A fresh server whose first request is a deep link still shows the app's menu; a click opens the head."""
    with running_app() as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url + "/census?census_score=induction")
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        wait_for_app(page)
        assert page.get_by_role("link", name="Head census").count() == 1  # the app's own menu
        page.screenshot(path=str(artifacts_dir / "census.png"), full_page=True)
        click_head_in_grid(page, layer=18, head=6)
        page.screenshot(path=str(artifacts_dir / "census-click-head.png"), full_page=True)
