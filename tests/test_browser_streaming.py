"""Streaming heads in the ablation lab, in a real browser: every head of a layer sees only the first tokens and a
recent window; narrowing the window in the page changes the link, the heads' rows and the prediction."""
from __future__ import annotations

import time

import pytest

from tests.browser_support import wait_for_app

pytestmark = pytest.mark.browser

DEADLINE_S = 600  # the whole test, on a loaded machine
DELTA_LOSS = ("() => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')].find("
              "m => m.innerText.includes('Δ loss')); return m ? m.querySelector('[data-testid=\"stMetricValue\"]')"
              ".innerText : null; }")


def test_streaming_heads_with_a_narrow_window_change_the_prediction(app_url, browser, artifacts_dir):
    deadline = time.monotonic() + DEADLINE_S

    def left() -> float:
        return max(1.0, (deadline - time.monotonic()) * 1000)

    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(app_url + "/ablation_lab?ablate=L0H*:stream:64")  # a window wider than the text: nothing changes
    wait_for_app(page, left())
    page.get_by_text("L0H0 · sees the first 4 + last 64 tokens").wait_for(timeout=left())
    page.wait_for_function(f"() => ({DELTA_LOSS})() !== null", timeout=left())
    wide = page.evaluate(f"({DELTA_LOSS})()")
    assert float(wide) == pytest.approx(0.0, abs=1e-4)

    window = page.get_by_role("spinbutton", name="Window (All heads)")
    window.fill("1")
    window.press("Enter")
    page.get_by_text("L0H0 · sees the first 4 + last 1 tokens").wait_for(timeout=left())
    page.wait_for_function(f"() => ({DELTA_LOSS})() !== null && ({DELTA_LOSS})() !== {wide!r}", timeout=left())
    assert "L0H0%3Astream%3A1" in page.url
    assert abs(float(page.evaluate(f"({DELTA_LOSS})()"))) > 1e-3
    page.screenshot(path=str(artifacts_dir / "lab_streaming.png"), full_page=True)
