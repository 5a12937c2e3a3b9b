"""Circuits in a real browser: build the IOI circuit, move the edge slider, share the link, open a node's head view."""
from __future__ import annotations

import time

import pytest

from tests.browser_support import figure_index, plot_point, wait_for_app

pytestmark = pytest.mark.browser


def _kept(page) -> str:
    return page.locator('[data-testid="stMetric"]').filter(has_text="Edges after pruning").inner_text()


def _wait_for_kept_change(page, before: str, timeout_s: float = 120.0) -> str:
    """Wait until the page shows another pruned-edge count than ``before`` (the rerun after the slider has drawn)."""
    deadline = time.monotonic() + timeout_s
    while _kept(page) == before and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    return _kept(page)


def test_circuit_slider_share_and_head_view(app_url, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1500, "height": 2200})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Circuits").first.wait_for(timeout=120_000)
    wait_for_app(page)
    page.goto(app_url + "/circuits?circuit_edges=40")
    wait_for_app(page)
    figure_index(page, "edges (eap, top n)", timeout_ms=600_000)
    wait_for_app(page)
    before = _kept(page)
    page.get_by_role("slider").last.focus()  # the edge slider (the only one on the page)
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    page.wait_for_url("**circuit_edges=60*", timeout=60_000)
    assert _wait_for_kept_change(page, before) != before
    wait_for_app(page)
    page.screenshot(path=str(artifacts_dir / "circuits.png"), full_page=True)

    page.get_by_role("button", name="Share this view").click()
    link = page.locator("code").filter(has_text="?s=").first
    link.wait_for(timeout=60_000)
    teammate = browser.new_context().new_page()
    teammate.goto(link.inner_text().strip())
    wait_for_app(teammate)
    figure_index(teammate, "edges (eap, top n)", timeout_ms=300_000)
    assert "circuit_edges=60" in teammate.url and _kept(teammate) == _kept(page)

    graph = figure_index(page, "edges (eap, top n)")
    x, y = plot_point(page, 3, 23, index=graph)  # L23H3 writes the answer into the logits: always in the circuit
    page.mouse.click(x, y)
    page.wait_for_url("**/head_view**", timeout=60_000)
    wait_for_app(page)
    assert "layer=23" in page.url and "head=3" in page.url
