"""Long texts on SmolLM2, side by side at 256 / 1,024 / 4,096 tokens, and the previous design where it runs.

Per length: the trace (one forward keeping what grows linearly), memory kept per cached text, every analysis of
the app on that text, and the bytes of the head view's figures. The previous design (all patterns kept, one
cell-by-cell figure) runs from a git worktree of its last commit, at the lengths it allowed (≤ 1,024).
Browser numbers (time to a rendered head view in Chromium, bytes received over the page's websocket) come from
the real app. Run: ``python -m bench.bench_long`` (about 15 minutes on a 2-core CPU).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from analysis.methods.ablation import ablate, clean_run
from analysis.methods.census import head_census
from analysis.methods.importance import gradient_importance
from analysis.methods.logit_attribution import decompose
from analysis.datasets.probes import repeated_random_text
from analysis.methods.rollout import trace_flow
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.loading import load_model
from analysis.runtime.trace import run_trace
from bench.common import machine, table
from components.figures.attention import head_figure, pooled_head_figure, token_strip_figure

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = (256, 1024, 4096)
PREVIOUS_COMMIT = "2f87ab4"  # the last commit that kept every pattern in the trace
MB = 1e6


def long_text(tokenizer, n_tokens: int) -> str:
    """A text of at least ``n_tokens`` tokens: random words, repeated (so induction heads have work)."""
    return repeated_random_text(tokenizer, n_tokens // 2 + 8, seed=n_tokens)


def _timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def head_view_bytes(trace, pattern) -> int:
    """Bytes of the head view's figures as the page builds them (pooled + window above 256 tokens)."""
    tokens = trace.display_tokens
    if trace.n_tokens <= 256:
        return len(head_figure(pattern, tokens, "").to_json())
    first = trace.n_tokens - 160
    return (len(pooled_head_figure(pattern, tokens, "", 192, window=(first, first, 160)).to_json())
            + len(head_figure(pattern[first:, first:], tokens, "", first_query=first, first_key=first).to_json()))


def backend_rows(handle) -> list[list[object]]:
    """Every analysis at each length on the current design."""
    rows = []
    for n_tokens in LENGTHS:
        text = long_text(handle.tokenizer, n_tokens)
        trace_s, trace = _timed(lambda: run_trace(handle, text, max_tokens=n_tokens))
        ids = torch.from_numpy(trace.token_ids.copy())[None]
        pattern_s, pattern = _timed(lambda: trace.pattern(20, 3))
        token_s, weights = _timed(lambda: trace.token_attention(n_tokens - 1, "from"))
        flow_s, _ = _timed(lambda: trace_flow(trace.layer_patterns, trace.n_heads, trace.n_layers - 1, n_tokens - 1,
                                              range(max(0, n_tokens - 256), n_tokens), threshold=0.02))
        census_s, _ = _timed(lambda: head_census(handle, text, max_tokens=n_tokens))
        gradient_s, _ = _timed(lambda: gradient_importance(handle, ids))
        clean_s, clean = _timed(lambda: clean_run(handle, ids))
        lab_s, _ = _timed(lambda: ablate(handle, ids, [HeadIntervention(15, 1)], clean=clean))
        dla_s, _ = _timed(lambda: decompose(handle, ids))
        strip_bytes = len(token_strip_figure(weights, trace.display_tokens, n_tokens - 1, "from", True).to_json())
        rows.append([n_tokens, f"{trace_s:.1f} s", f"{trace.nbytes / MB:.0f} MB", f"{pattern_s:.2f} s",
                     f"{head_view_bytes(trace, pattern) / MB:.2f} MB", f"{token_s:.1f} s / {strip_bytes / MB:.2f} MB",
                     f"{flow_s:.1f} s", f"{census_s:.1f} s", f"{gradient_s:.1f} s",
                     f"{clean_s:.1f} s + {lab_s:.1f} s", f"{dla_s:.1f} s"])
        print("| " + " | ".join(str(cell) for cell in rows[-1]) + " |", file=sys.stderr, flush=True)
    return rows


_PREVIOUS_SCRIPT = """
import json, sys, time
from analysis.runtime.loading import load_model
from analysis.runtime.trace import run_trace
from analysis.datasets.probes import repeated_random_text
from components.figures.attention import head_figure
handle = load_model("smollm2-135m")
out = {}
for n in (256, 1024):
    text = repeated_random_text(handle.tokenizer, n // 2 + 8, seed=n)
    start = time.perf_counter(); trace = run_trace(handle, text, max_tokens=n); seconds = time.perf_counter() - start
    figure = head_figure(trace.attentions[20, 3], trace.display_tokens, "")
    start = time.perf_counter(); payload = figure.to_json(); serialise = time.perf_counter() - start
    out[n] = {"trace_s": seconds, "kept_bytes": trace.attentions.nbytes, "figure_bytes": len(payload),
              "serialise_s": serialise}
print(json.dumps(out))
"""


def previous_rows() -> list[list[object]]:
    """The previous design's numbers, from a worktree of its commit (empty if git cannot make one)."""
    folder = Path(tempfile.mkdtemp(prefix="atlas-previous-")) / "tree"
    made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), PREVIOUS_COMMIT],
                          capture_output=True, text=True)
    if made.returncode != 0:
        print(f"(previous design not measured: {made.stderr.strip()})")
        return []
    try:
        output = subprocess.run([sys.executable, "-c", _PREVIOUS_SCRIPT], cwd=folder, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(folder)}, check=True).stdout
        numbers = json.loads(output.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True)
    return [[int(n), f"{v['trace_s']:.1f} s", f"{v['kept_bytes'] / MB:.0f} MB", f"{v['figure_bytes'] / MB:.1f} MB",
             f"{v['serialise_s']:.2f} s"] for n, v in numbers.items()] + [[4096, "not allowed (cap 1,024)", "18,119 MB "
                                                                            "(would be)", "—", "—"]]


def browser_rows(handle) -> list[list[object]]:
    """Time from opening a short link to a drawn head view, and bytes received over its websocket."""
    from analysis.share_store import ShareStore
    from tests.browser_support import chromium, running_app, wait_for_app

    database = Path(tempfile.mkdtemp(prefix="atlas-bench-")) / "atlas.sqlite"
    store = ShareStore(f"sqlite:///{database}")
    rows = []
    with running_app({"ATLAS_DB_PATH": str(database)}) as base, chromium() as browser:
        for n_tokens in LENGTHS:
            view = store.create_view({"model": "smollm2-135m", "text": long_text(handle.tokenizer, n_tokens),
                                      "max_tokens": n_tokens, "layer": 20, "head": 3}, handle.info.revision)
            for attempt in ("cold", "warm"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                received = []
                page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.append(
                    len(frame) if isinstance(frame, (bytes, str)) else 0)))
                start = time.perf_counter()
                page.goto(f"{base}/head_view?s={view}")
                wait_for_app(page, timeout_ms=600_000)
                page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=600_000)
                seconds = time.perf_counter() - start - 0.5  # wait_for_app's settling pause
                rows.append([n_tokens, attempt, f"{seconds:.1f} s", f"{sum(received) / MB:.2f} MB"])
                page.close()
    return rows


def main() -> None:
    """Print the tables for BENCHMARKS.md."""
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    handle = load_model("smollm2-135m")
    header = ["tokens", "trace", "kept per cached text", "one head's pattern", "head view figures",
              "token view (every head)", "rollout + flow", "census", "gradient importance", "lab: clean + one head",
              "DLA"]
    print(table(header, backend_rows(handle)) + "\n")
    print("Previous design (every pattern kept in the trace, cell-by-cell head figure):\n")
    print(table(["tokens", "trace", "kept per cached text", "head figure", "serialise"], previous_rows()) + "\n")
    print("Browser (Chromium, the real app, short link to the head view; cold = first visit runs the model):\n")
    print(table(["tokens", "visit", "to a drawn head view", "received over the websocket"], browser_rows(handle)))


if __name__ == "__main__":
    main()
