"""Activation patching in a real browser: run the grids on the IOI pair, click a head into the ablation lab."""
from __future__ import annotations

import pytest

from analysis.datasets.probes import CORRUPTED_IOI_PROMPT
from tests.browser_support import figure_index, send_head_to_lab, wait_for_app

pytestmark = pytest.mark.browser



def test_patching_grid_then_a_head_into_the_lab(app_url, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1500, "height": 2400})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Activation patching").first.wait_for(timeout=120_000)
    wait_for_app(page)  # let the first run finish its imports before a second session starts
    page.goto(app_url + "/patching?patch_heads=L23H3")
    wait_for_app(page)
    page.get_by_text("Rank correlation estimate vs exact").wait_for(timeout=900_000)  # ~15 s on an idle machine
    figure_index(page, "Head × position", timeout_ms=300_000)
    wait_for_app(page)
    page.screenshot(path=str(artifacts_dir / "patching.png"), full_page=True)

    exact = figure_index(page, "Exact head patching")
    send_head_to_lab(page, 23, 3, exact, "L23H3%3Aresample%3A0")  # the largest denoising effect on the IOI pair
    page.get_by_text("Top prediction after").wait_for(timeout=120_000)
    page.screenshot(path=str(artifacts_dir / "patching_lab.png"), full_page=True)
    assert "ablate=L23H3%3Aresample%3A0" in page.url
    assert page.get_by_role("textbox", name="Heads").input_value() == "L23H3"
    # resampling the head from the corrupted prompt flips the clean prompt's answer to the corrupted one's
    assert "John" in page.locator('[data-testid="stMetric"]').filter(has_text="Top prediction after").inner_text()
    source = page.get_by_role("textbox", name="Second text (resample source, same token length)")
    assert source.input_value() == CORRUPTED_IOI_PROMPT
