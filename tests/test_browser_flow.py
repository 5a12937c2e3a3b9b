"""Rollout/flow, head writes and compare in a real browser, with screenshots (tests/artifacts/)."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from analysis.datasets.probes import EXAMPLE_TEXTS

from tests.browser_support import plot_point, selected_option, wait_for_app

pytestmark = pytest.mark.browser

FIGURES = "() => document.querySelectorAll('.js-plotly-plot').length"


def _open(browser, app_url: str, path: str, figures: int, height: int = 2400):
    page = browser.new_page(viewport={"width": 1500, "height": height})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Rollout and flow").wait_for(timeout=120_000)
    page.goto(app_url + path)
    wait_for_app(page)
    page.wait_for_function(f"() => ({FIGURES})() >= {figures}", timeout=120_000)
    wait_for_app(page)
    return page


def test_flow_page_with_a_circuit_of_heads(app_url, browser, artifacts_dir):
    page = _open(browser, app_url, "/flow?flow_sink=1", 3, height=2600)
    traces = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[2].data.length")
    assert traces >= 3  # edge classes, nodes, the output marker
    page.screenshot(path=str(artifacts_dir / "flow.png"), full_page=True)
    box = page.get_by_role("textbox", name="Only these heads")
    box.fill("L23H*, L29H1")
    box.press("Enter")
    page.wait_for_url("**flow_heads=L23H*", timeout=60_000)
    wait_for_app(page)
    page.get_by_text("selected heads").first.wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "flow_circuit.png"), full_page=True)


def test_flow_graph_of_a_paragraph_with_every_edge(app_url, browser, artifacts_dir):
    text = quote(EXAMPLE_TEXTS["Paragraph"])
    page = _open(browser, app_url, f"/flow?text={text}&flow_all_edges=1&flow_threshold=0.05", 3, height=2600)
    drawn = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[2].data.length")
    assert drawn >= 5
    page.screenshot(path=str(artifacts_dir / "flow_paragraph.png"), full_page=True)


def test_writes_grid_click_opens_the_head_view(app_url, browser, artifacts_dir):
    page = _open(browser, app_url, "/head_writes?dla_target=%20Mary&layer=29&head=1", 2)
    page.get_by_text("Sum of all terms").wait_for(timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "head_writes.png"), full_page=True)
    x, y = plot_point(page, 0, 23, index=1)  # L23H0 in the DLA grid
    page.mouse.click(x, y)
    page.wait_for_url("**/head_view?*layer=23*", timeout=60_000)
    wait_for_app(page)
    assert "head=1" not in page.url  # head 0 is the default, so it leaves the link
    page.get_by_text("L23H0: query → key").first.wait_for(timeout=60_000)


def test_compare_click_a_head_selects_it(app_url, browser, artifacts_dir):
    page = _open(browser, app_url, "/compare", 4, height=2400)
    page.get_by_text("mean JS distance").wait_for(timeout=60_000)
    x, y = plot_point(page, 4, 24, index=3)  # L24H4 in the JS-distance grid (after first, second, difference)
    page.mouse.click(x, y)
    page.wait_for_url("**layer=24**", timeout=60_000)
    wait_for_app(page)
    page.get_by_text("L24H4: mean JS distance").wait_for(timeout=60_000)
    assert "head=4" in page.url
    assert (selected_option(page, "Layer"), selected_option(page, "Head")) == ("L24", "H4")
    page.screenshot(path=str(artifacts_dir / "compare.png"), full_page=True)

    table = page.locator('[data-testid="stDataFrame"]').bounding_box()
    page.mouse.click(table["x"] + 15, table["y"] + 35 * 2 + 17)  # the row selector of the 2nd row: L23H0
    page.wait_for_url("**layer=23**", timeout=60_000)
    wait_for_app(page)
    page.get_by_text("L23H0: mean JS distance").wait_for(timeout=60_000)
    assert (selected_option(page, "Layer"), selected_option(page, "Head")) == ("L23", "H0")
