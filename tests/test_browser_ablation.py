"""The importance → lab flow in a real browser: click a head, move its slider, watch the bars change.

Every wait is on what the user sees (a button, a chart, the head's effect in words, the bars) and shares one
generous deadline for the whole test, so a slow, busy machine only makes the test slower.
"""
from __future__ import annotations

import time

import pytest

from tests.browser_support import send_head_to_lab, wait_for_app

pytestmark = pytest.mark.browser

# the drawn "after" bars; plotly.js keeps float32 data base64-encoded in gd.data, decoded only in gd._fullData
BAR_VALUES = ("() => { const gd = [...document.querySelectorAll('.js-plotly-plot')].find(gd => gd.layout && "
              "gd.layout.title && String(gd.layout.title.text).includes('Next-token probability'));"
              " const x = gd && gd._fullData && gd._fullData[1] ? Array.from(gd._fullData[1].x) : [];"
              " return x.length ? x.join(',') : null; }")
DEADLINE_S = 1200  # the whole test, on a loaded machine: an exact ablation of 270 heads, then the lab


def test_click_a_head_then_move_its_slider(app_url, browser, artifacts_dir):
    deadline = time.monotonic() + DEADLINE_S

    def left() -> float:  # milliseconds left before the test's one deadline
        return max(1.0, (deadline - time.monotonic()) * 1000)

    page = browser.new_page(viewport={"width": 1500, "height": 2600})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Head importance").wait_for(timeout=left())
    page.goto(app_url + "/importance?metric=logprob")
    wait_for_app(page, left())
    page.get_by_role("button", name="Run exact ablation of all 270 heads").click(timeout=left())  # a job
    page.get_by_text("Rank correlation").wait_for(timeout=left())  # exact ablation of 270 heads
    wait_for_app(page, left())
    page.screenshot(path=str(artifacts_dir / "importance.png"), full_page=True)

    send_head_to_lab(page, 1, 5, 1, "L1H5", left())  # L1H5 in the exact grid
    page.get_by_text("L1H5 · removed").wait_for(timeout=left())
    page.wait_for_function(f"() => ({BAR_VALUES})() !== null", timeout=left())
    removed = page.evaluate(f"({BAR_VALUES})()")
    assert page.get_by_role("textbox", name="Heads").input_value() == "L1H5"
    page.screenshot(path=str(artifacts_dir / "lab_removed.png"), full_page=True)

    slider = page.get_by_role("slider").last  # L1H5's scale (the last slider on the page)
    slider.focus()
    slider.press("End")  # scale 2: the head doubled
    page.get_by_text("L1H5 · ×2.00").wait_for(timeout=left())  # the head's row says what the user asked for
    page.wait_for_function(f"() => ({BAR_VALUES})() !== null && ({BAR_VALUES})() !== {removed!r}", timeout=left())
    assert "ablate=L1H5%3Azero%3A2" in page.url
    doubled = page.evaluate(f"({BAR_VALUES})()")
    assert doubled != removed
    page.screenshot(path=str(artifacts_dir / "lab_doubled.png"), full_page=True)
