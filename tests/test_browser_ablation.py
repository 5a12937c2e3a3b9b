"""The importance → lab flow in a real browser: click a head, move its slider, watch the bars change."""
from __future__ import annotations

import pytest

from tests.browser_support import figure_index, send_head_to_lab, wait_for_app

pytestmark = pytest.mark.browser

BAR_VALUES = "(i) => Array.from(document.querySelectorAll('.js-plotly-plot')[i].data[1].x).join(',')"




def test_click_a_head_then_move_its_slider(app_url, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1500, "height": 2600})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Head importance").wait_for(timeout=120_000)
    page.goto(app_url + "/importance?metric=logprob")
    wait_for_app(page)
    page.get_by_role("button", name="Run exact ablation of all 270 heads").click(timeout=180_000)  # a job
    page.wait_for_url("**job=*", timeout=120_000)  # the job's link, while it runs
    page.get_by_text("Rank correlation").wait_for(timeout=600_000)  # exact ablation of 270 heads
    wait_for_app(page)
    page.screenshot(path=str(artifacts_dir / "importance.png"), full_page=True)

    send_head_to_lab(page, 1, 5, 1, "L1H5")  # L1H5 in the exact grid
    page.locator('[data-testid="stSlider"]').first.wait_for()
    bars = figure_index(page, "Next-token probability", timeout_ms=120_000)
    removed = page.evaluate(BAR_VALUES, bars)
    assert page.get_by_role("textbox", name="Heads").input_value() == "L1H5"
    page.screenshot(path=str(artifacts_dir / "lab_removed.png"), full_page=True)

    slider = page.get_by_role("slider").last  # L1H5's scale (the last slider on the page)
    slider.focus()
    slider.press("End")  # scale 2: the head doubled
    page.wait_for_url("**ablate=L1H5%3Azero%3A2*", timeout=60_000)
    wait_for_app(page)
    page.wait_for_function(f"() => ({BAR_VALUES})({bars}) !== {removed!r}", timeout=180_000)
    doubled = page.evaluate(BAR_VALUES, bars)
    assert doubled != removed
    page.screenshot(path=str(artifacts_dir / "lab_doubled.png"), full_page=True)
