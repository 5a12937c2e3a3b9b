"""Ablation-lab update latency with four concurrent browser sessions, without and with a job running.

Run with ``python -m bench.bench_latency`` (``--updates 8``). The real app is started on a free 127.0.0.1 port
with its own database; four headless Chromium sessions (one thread and one browser each, on the same machine)
open the lab on four different heads and each moves its head's slider one step at a time. An update's latency
is the time from the key press to the moment the next-token bars show the new result and the page has stopped
running. The same sessions are then timed while an exact all-heads ablation sweep over IOI prompts runs as a
job on the app's embedded Dask workers (started from the datasets page like a user would), and once more after
the sweep is cancelled, to show the machine's noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from analysis.jobs.records import JobStore
from analysis.jobs.runner import wait_for
from analysis.share_store import ShareStore
from bench.common import machine, table
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, running_app, wait_for_app

SESSIONS = [(1, 5), (2, 3), (3, 1), (4, 2)]
BAR_VALUES = ("() => { const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => g.layout && "
              "g.layout.title && String(g.layout.title.text).includes('Next-token probability'));"
              " return gd && gd.data[1] ? JSON.stringify(gd.data[1].x) : ''; }")
IDLE = ("() => !document.querySelector('[data-testid=\"stStatusWidget\"]') || "
        "!document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')")


def _session(url: str, head: tuple[int, int], updates: int, start: threading.Barrier, latencies: list[float],
             errors: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{url}/ablation_lab?ablate=L{head[0]}H{head[1]}:zero:1")
            page.wait_for_function(f"() => ({BAR_VALUES})() !== ''", timeout=300_000)
            wait_for_app(page, timeout_ms=300_000)
            slider = page.get_by_role("slider").first
            start.wait()
            for _ in range(updates):
                before = page.evaluate(BAR_VALUES)
                began = time.perf_counter()
                slider.focus()
                slider.press("ArrowLeft")
                page.wait_for_function(f"() => ({BAR_VALUES})() !== {before!r}", timeout=300_000)
                page.wait_for_function(IDLE, timeout=300_000)
                latencies.append(time.perf_counter() - began)
            browser.close()
    except Exception as error:  # noqa: BLE001 - reported in the table instead of killing the other sessions
        errors.append(f"L{head[0]}H{head[1]}: {type(error).__name__}: {error}"[:300])


def concurrent_updates(url: str, updates: int, round_index: int) -> tuple[list[float], list[str]]:
    """Latencies of ``updates`` slider moves in each of four sessions running at the same time.

    Each round uses other heads (6 layers further up), so no update is served from an earlier round's cache.
    """
    latencies: list[float] = []
    errors: list[str] = []
    start = threading.Barrier(len(SESSIONS))
    threads = [threading.Thread(target=_session, args=(url, (layer + 6 * round_index, head), updates, start,
                                                       latencies, errors))
               for layer, head in SESSIONS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def _start_job(url: str, rows: int) -> None:
    """Start an exact-ablation sweep from the datasets page, as a user would, and wait until it computes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/datasets?ds_n={rows}&sweep=exact")
        page.get_by_role("button", name=f"Start the sweep over {rows} rows").click(timeout=300_000)
        page.get_by_text("rows — about").first.wait_for(timeout=600_000)  # progress with a time left
        browser.close()


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    """Print p50/p95 of lab updates with four sessions, without and with a running job."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=8, help="slider moves per session")
    parser.add_argument("--job-rows", type=int, default=100, help="IOI prompts of the background sweep")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "atlas.sqlite"
        with running_app({"ATLAS_DB_PATH": str(database)}, timeout=300) as url:
            _, errors = concurrent_updates(url, 1, 0)  # warm: model, clean runs and browsers' first page
            if errors:
                raise RuntimeError(f"warm-up failed: {'; '.join(errors)}")
            jobs = JobStore(ShareStore(f"sqlite:///{database}"))
            job = f"exact-ablation sweep of {args.job_rows} prompts running"
            for round_index, label in enumerate(("no job", job, "no job again (the sweep cancelled), for the noise"),
                                                start=1):
                if label == job:
                    _start_job(url, args.job_rows)
                latencies, errors = concurrent_updates(url, args.updates, round_index)
                if not latencies:
                    raise RuntimeError(f"no update finished ({label}): {'; '.join(errors)}")
                p50, p95 = _percentiles(latencies)
                rows.append([label, len(latencies), f"{p50:.2f} s", f"{p95:.2f} s", f"{max(latencies):.2f} s",
                             "; ".join(errors) or "—"])
                for record in jobs.recent():
                    if record.active:
                        print(f"job progress when the sessions ended: {record.detail}; cancelling it")
                        jobs.request_cancel(record.id)
                        wait_for(jobs, record.id, 60)
    print(f"Machine: {machine()}; load average at the start: {load:.1f}\n")
    print(table(["four sessions, lab slider moves", "updates", "p50", "p95", "max", "errors"], rows))


if __name__ == "__main__":
    main()
