"""A 4,096-token text in a real browser: the head view opens with its window, zooms, and sends only light figures."""
from __future__ import annotations

import pytest

from analysis.datasets.probes import repeated_random_text
from analysis.share_store import ShareStore
from tests.browser_support import running_app, wait_for_app

pytestmark = pytest.mark.browser

LONG_TOKENS = 4096
FIGURE_BYTES = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(gd => JSON.stringify(gd.data).length + JSON.stringify(gd.layout).length)"""
WINDOW_FIRST_ROW = "document.querySelectorAll('.js-plotly-plot')[1].data[0].y[0]"  # the window's first y label


@pytest.fixture(scope="module")
def long_view(smollm2, tmp_path_factory):
    """A server with its own share database holding a short link to a 4,096-token text on L20H3."""
    database = tmp_path_factory.mktemp("long") / "atlas.sqlite"
    text = repeated_random_text(smollm2.tokenizer, LONG_TOKENS // 2 + 8, seed=11)
    view = ShareStore(f"sqlite:///{database}").create_view(
        {"model": "smollm2-135m", "text": text, "max_tokens": LONG_TOKENS, "layer": 20, "head": 3},
        smollm2.info.revision)
    with running_app({"ATLAS_DB_PATH": str(database)}) as url:
        yield url, view


def test_head_view_at_4096_tokens_zooms_with_light_payload(browser, long_view, artifacts_dir):
    url, view = long_view
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    received: list[int] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: received.append(len(frame))))
    page.goto(url + "/")  # a fresh server's first session starts at the main script
    wait_for_app(page)
    page.goto(f"{url}/head_view?s={view}")
    wait_for_app(page, timeout_ms=900_000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=900_000)
    wait_for_app(page, timeout_ms=900_000)
    assert page.get_by_text("4096 tokens").first.is_visible()
    assert page.evaluate(f"() => {WINDOW_FIRST_ROW}").endswith("(3936)")  # the last 160 queries by default
    sizes = page.evaluate(FIGURE_BYTES)
    assert len(sizes) == 2 and max(sizes) < 3_000_000, sizes
    assert sum(received) < 8_000_000, f"{sum(received)} bytes received for the page"
    page.screenshot(path=str(artifacts_dir / "head_view_4096.png"), full_page=True)

    zoom = page.get_by_role("spinbutton", name="Window: first query row")
    zoom.fill("2000")
    zoom.press("Enter")
    page.wait_for_function(f"() => {WINDOW_FIRST_ROW}.endsWith('(2000)')", timeout=600_000)
    wait_for_app(page, timeout_ms=600_000)
    assert "s=" in page.url and f"s={view}" not in page.url  # the zoomed view travels in a new short link
    assert max(page.evaluate(FIGURE_BYTES)) < 3_000_000
    page.screenshot(path=str(artifacts_dir / "head_view_4096_zoomed.png"), full_page=True)
    page.close()
