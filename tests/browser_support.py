"""Start the real app on a free localhost port and drive it with Playwright in Debian's Chromium."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_app(extra_env: dict[str, str] | None = None, timeout: float = 120.0,
                extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless (with ``extra_args``, e.g. ``--secrets.files``); yield its base URL;
    stop it afterwards."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
               *extra_args]
    logs = ROOT / "tests" / "artifacts"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"streamlit-{port}.log", "w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (see {log.name})")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_for_app(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished running the script (no 'running' indicator, main block present)."""
    page.wait_for_selector('[data-testid="stMain"]', timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(500)


def plot_point(page, data_x: float, data_y: float, index: int = 0) -> tuple[float, float]:
    """Screen coordinates of a data point of the index-th Plotly figure on the page."""
    return page.evaluate(
        """([x, y, i]) => { const gd = document.querySelectorAll('.js-plotly-plot')[i];
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + gd._fullLayout.xaxis.d2p(x), box.top + gd._fullLayout.yaxis.d2p(y)]; }""",
        [data_x, data_y, index],
    )


def category_cell(page, column: int, row: int, index: int = 0) -> tuple[float, float]:
    """Screen coordinates of the centre of cell (``column``, ``row``), counted in categories, of the index-th
    Plotly figure on the page (a heatmap over token labels)."""
    return page.evaluate(
        """([x, y, i]) => { const gd = document.querySelectorAll('.js-plotly-plot')[i];
            const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
            return [box.left + gd._fullLayout.xaxis.l2p(x), box.top + gd._fullLayout.yaxis.l2p(y)]; }""",
        [column, row, index],
    )


FIGURE_INDEX = ("(title) => [...document.querySelectorAll('.js-plotly-plot')].findIndex("
                "gd => gd.layout && gd.layout.title && String(gd.layout.title.text).includes(title))")


def figure_index(page, title: str, timeout_ms: int = 60_000) -> int:
    """Wait for the Plotly figure whose title contains ``title``; return its position among the page's figures."""
    page.wait_for_function(f"(title) => ({FIGURE_INDEX})(title) >= 0", arg=title, timeout=timeout_ms)
    return page.evaluate(FIGURE_INDEX, title)


def send_head_to_lab(page, layer: int, head: int, grid_index: int, ablate_param: str,
                     timeout_ms: float = 60_000) -> None:
    """Click a head in the layer × head grid at ``grid_index``, wait for ``ablate_param`` (URL-encoded) in the
    link, then follow the page's link to the ablation lab (each wait up to ``timeout_ms``)."""
    x, y = plot_point(page, head, layer, index=grid_index)
    page.mouse.click(x, y)
    page.wait_for_url(f"**ablate={ablate_param}*", timeout=timeout_ms)
    wait_for_app(page, timeout_ms)
    page.get_by_text("Open the ablation lab").first.click(timeout=timeout_ms)
    page.wait_for_url("**/ablation_lab**", timeout=timeout_ms)
    wait_for_app(page, timeout_ms)


def selected_option(page, label: str) -> str:
    """The shown value of the select box with this label."""
    return page.get_by_role("combobox", name=label, exact=True).input_value()


def click_head_in_grid(page, layer: int, head: int, figure_index: int = 0, attempts: int = 3,
                       opens: str = "head_view") -> None:
    """Click a head's cell in a layer × head grid, then check the page ``opens`` (by URL path) opened.

    A click that lands while the page is still re-running is lost, so it is retried a few times.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        wait_for_app(page)
        x, y = plot_point(page, head, layer, index=figure_index)
        page.mouse.click(x, y)
        try:
            page.wait_for_url(f"**/{opens}?**", timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
    wait_for_app(page)
    page.locator(".js-plotly-plot .heatmaplayer").first.wait_for()
    assert selected_option(page, "Layer") == f"L{layer}" and selected_option(page, "Head") == f"H{head}"
