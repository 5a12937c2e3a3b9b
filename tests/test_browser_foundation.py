"""The main flow in a real browser: type a text, click a head in the overview, reload the link."""
from __future__ import annotations

import pytest

from tests.browser_support import click_head_in_grid, selected_option, wait_for_app

pytestmark = pytest.mark.browser


def test_text_to_head_and_back_through_the_url(app_url, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url + "/")
    wait_for_app(page)
    text_box = page.get_by_role("textbox", name="Text")
    text_box.fill("The quick brown fox jumps over the lazy dog. The quick brown fox")
    text_box.press("Control+Enter")
    wait_for_app(page)
    page.locator(".js-plotly-plot").first.wait_for()
    assert "quick" in page.url
    page.screenshot(path=str(artifacts_dir / "foundation-overview.png"), full_page=True)

    click_head_in_grid(page, layer=2, head=4)
    assert "L2H4" in page.locator(".js-plotly-plot").first.inner_text()
    page.screenshot(path=str(artifacts_dir / "foundation-head.png"), full_page=True)

    link = page.url
    assert "/head_view?" in link and "layer=2" in link and "head=4" in link and "quick" in link
    fresh = browser.new_context().new_page()
    fresh.set_viewport_size({"width": 1400, "height": 1000})
    fresh.goto(link)
    wait_for_app(fresh)
    fresh.locator(".js-plotly-plot .heatmaplayer").first.wait_for()
    assert selected_option(fresh, "Layer") == "L2" and selected_option(fresh, "Head") == "H4"
    assert "quick brown fox" in fresh.get_by_role("textbox", name="Text").input_value()
    fresh.screenshot(path=str(artifacts_dir / "foundation-reload.png"), full_page=True)
