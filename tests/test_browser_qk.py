"""In a real browser: click a cell of a head's pattern and read why the head attends there (the QK breakdown)."""
from __future__ import annotations

import re

import pytest

from analysis.datasets.probes import IOI_PROMPT
from analysis.methods.qk_attribution import qk_breakdown
from analysis.runtime.trace import encode_text
from tests.browser_support import category_cell, figure_index, wait_for_app

pytestmark = pytest.mark.browser


def test_a_clicked_cell_opens_its_qk_breakdown(app_url, browser, smollm2, artifacts_dir):
    query, key = 13, 4
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(app_url + "/head_view?layer=18&head=6")
    wait_for_app(page)
    x, y = category_cell(page, key, query, figure_index(page, "L18H6: query → key", timeout_ms=120_000))
    page.mouse.click(x, y)
    page.wait_for_url(f"**qk_query={query}*", timeout=60_000)
    assert f"qk_key={key}" in page.url
    wait_for_app(page)
    page.get_by_role("heading", name=re.compile(rf"^Why L18H6 attends from .* \({query}\) to .* \({key}\)")).wait_for(
        timeout=60_000)
    shown = page.locator('[data-testid="stMetric"]').filter(has_text="Logit").locator(
        '[data-testid="stMetricValue"]').inner_text()
    ids, _ = encode_text(smollm2, IOI_PROMPT, 256)
    assert float(shown) == pytest.approx(qk_breakdown(smollm2, ids, 18, 6, query, key).cell.logit, abs=2e-3)
    page.screenshot(path=str(artifacts_dir / "qk-breakdown.png"))
    matrix = page.locator(".js-plotly-plot").nth(figure_index(page, "Largest terms of the logit"))
    matrix.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "qk-breakdown-terms.png"))
