"""In a real browser: open a head page from the census map, then follow one of its composition partners."""
from __future__ import annotations

import re

import pytest

from tests.browser_support import click_head_in_grid, wait_for_app

pytestmark = pytest.mark.browser


def test_census_map_to_head_page_to_a_composition_partner(app_url, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(app_url + "/census?census_score=copying")
    page.locator(".js-plotly-plot").first.wait_for(timeout=400_000)  # first census: the weights are read too
    wait_for_app(page)
    click_head_in_grid(page, layer=18, head=6, opens="head")
    page.get_by_role("heading", name="Head L18H6").wait_for(timeout=180_000)
    wait_for_app(page, timeout_ms=240_000)
    partner = page.get_by_role("button", name=re.compile(r"^L\d+H\d+ · ")).first
    partner.wait_for(timeout=240_000)
    target = partner.inner_text().split(" ")[0]
    page.screenshot(path=str(artifacts_dir / "head-page.png"), full_page=True)
    partner.click()
    page.get_by_role("heading", name=f"Head {target}").wait_for(timeout=120_000)
    layer, head = target[1:].split("H")
    page.wait_for_url(re.compile(rf".*/head\?.*layer={layer}.*"), timeout=30_000)
    assert f"head={head}" in page.url or head == "0"
    page.screenshot(path=str(artifacts_dir / "head-page-partner.png"), full_page=True)
