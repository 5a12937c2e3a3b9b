"""Foundation timings: cold (GGUF) and warm (cached safetensors) model load, one trace, the overview.

Run with ``python -m bench.bench_foundation`` (add ``--browser`` to time the overview page in Chromium).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from analysis.runtime.loading import load_model
from analysis.datasets.probes import IOI_PROMPT, repeated_random_text
from analysis.runtime.trace import run_trace
from bench.common import best_of, machine, table
from components.figures.attention import overview_mosaic


def _timed_load(name: str) -> tuple[float, object]:
    start = time.perf_counter()
    handle = load_model(name)
    return time.perf_counter() - start, handle


def _load_seconds_in_fresh_process(name: str) -> float:
    """``load_model`` time in a new interpreter (imports excluded), as on a second app start."""
    code = ("import time; from analysis.runtime.loading import load_model; start = time.perf_counter(); "
            f"load_model({name!r}); print(time.perf_counter() - start)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def load_times() -> list[list[object]]:
    """Cold GGUF load (empty cache folder) and warm load (from the cache it wrote), plus MiniLM."""
    rows = []
    previous = os.environ.get("ATLAS_CACHE_DIR")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ATLAS_CACHE_DIR"] = folder
        cold, _ = _timed_load("smollm2-135m")
        warm, _ = _timed_load("smollm2-135m")
        fresh_process = _load_seconds_in_fresh_process("smollm2-135m")
    if previous is None:
        del os.environ["ATLAS_CACHE_DIR"]
    else:
        os.environ["ATLAS_CACHE_DIR"] = previous
    rows.append(["SmolLM2-135M cold load (GGUF dequantize + write cache)", f"{cold:.1f} s"])
    rows.append(["SmolLM2-135M warm load (cached safetensors)", f"{warm:.1f} s"])
    rows.append(["SmolLM2-135M warm load in a new process (the second app start)", f"{fresh_process:.1f} s"])
    rows.append(["cold / warm (new process)", f"{cold / fresh_process:.0f}×"])
    rows.append(["MiniLM-L6 load", f"{_timed_load('minilm-l6')[0]:.2f} s"])
    return rows


def trace_and_overview_times() -> list[list[object]]:
    """Trace of the IOI prompt and of a 256-token text; building and serialising the 270-head overview."""
    handle = load_model("smollm2-135m")
    long_text = repeated_random_text(handle.tokenizer, length=128, seed=0)
    rows = []
    for label, text in [("IOI prompt", IOI_PROMPT), ("256-token text", long_text)]:
        trace = run_trace(handle, text, max_tokens=256)
        seconds = best_of(lambda: run_trace(handle, text, max_tokens=256), repeats=3)
        rows.append([f"trace, {label} ({trace.n_tokens} tokens)", f"{seconds:.3f} s"])
        figure_seconds = best_of(lambda: overview_mosaic(trace.thumbnails).to_json(), repeats=3)
        size = len(overview_mosaic(trace.thumbnails).to_json())
        rows.append([f"overview figure build + JSON, {label}", f"{figure_seconds:.3f} s ({size / 1e6:.2f} MB)"])
    return rows


def browser_overview_time() -> list[list[object]]:
    """Seconds from opening the overview URL (warm app, model loaded) until the mosaic is drawn."""
    from tests.browser_support import chromium, running_app, wait_for_app

    with running_app() as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/")
        wait_for_app(page)
        page.locator(".js-plotly-plot .heatmaplayer").first.wait_for()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            page.goto(url + "/")
            page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=60_000)
            times.append(time.perf_counter() - start)
        rerun_times = [_toggle_redraw_seconds(page) for _ in range(4)]
    return [["overview page in Chromium, warm app (page load → mosaic drawn)", f"{min(times):.2f} s"],
            ["overview redraw after a control change (toggle → new mosaic drawn)", f"{min(rerun_times):.2f} s"]]


def _toggle_redraw_seconds(page) -> float:
    """Flip the log-colour toggle and time until the mosaic's data has been replaced in the browser."""
    page.evaluate("() => { window.__oldZ = document.querySelector('.js-plotly-plot').data[0].z; }")
    start = time.perf_counter()
    page.get_by_text("Log colour", exact=True).click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('.js-plotly-plot');"
        " return gd && gd.data && gd.data[0].z !== window.__oldZ; }", timeout=60_000)
    return time.perf_counter() - start


def main() -> None:
    """Print the foundation timings as a markdown table."""
    rows = load_times() + trace_and_overview_times()
    if "--browser" in sys.argv:
        rows += browser_overview_time()
    print(f"Machine: {machine()}\n")
    print(table(["what", "time"], rows))


if __name__ == "__main__":
    main()
