"""Every page of the real app (Streamlit's AppTest, no browser) on one 4,096-token text on SmolLM2.

Per page: seconds to a finished script run on a cold process-wide cache except for the model and the text's
trace (opened by the first page), whether the run raised, and the messages it showed. The second text (compare,
patching, the lab's resample) is the same text with its first sentence's words changed, so it has the same
token length. Run: ``python -m bench.bench_pages_long`` (about 10 minutes on a 2-core CPU).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from analysis.datasets.probes import repeated_random_text
from analysis.runtime.loading import load_model
from bench.common import machine, table
from components.navigation import PAGES

ROOT = Path(__file__).resolve().parent.parent
N_TOKENS = 4096
PAGE_STATE = {"head": {"layer": "20", "head": "3"}, "lab": {"ablate": "L15H1,L20H3"},
              "patching": {"patch_target": "", "patch_distractor": ""}}


def _texts(tokenizer) -> tuple[str, str]:
    """A 4,096-token text and one of the same length whose first token differs."""
    text = repeated_random_text(tokenizer, N_TOKENS // 2 + 8, seed=4)
    ids = tokenizer.encode(text, add_special_tokens=False)[:N_TOKENS]
    other = tokenizer.encode(" And" + tokenizer.decode(ids[1:]), add_special_tokens=False)
    assert len(other) == len(ids), "the second text must keep the token length"
    return tokenizer.decode(ids), tokenizer.decode(other)


def open_page(file: str, params: dict[str, str]) -> tuple[float, AppTest]:
    """Seconds to run the app on one page file with these query parameters, and the finished run."""
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=3600)
    for key, value in params.items():
        app.query_params[key] = value
    app.switch_page(file)
    start = time.perf_counter()
    app.run()
    return time.perf_counter() - start, app


def main() -> None:
    """Print the table for BENCHMARKS.md."""
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    handle = load_model("smollm2-135m")
    text, second = _texts(handle.tokenizer)
    base = {"model": "smollm2-135m", "text": text, "compare_text": second, "max_tokens": str(N_TOKENS)}
    rows = []
    for file, title, _, key in PAGES:
        if key == "datasets":
            continue
        seconds, app = open_page(file, {**base, **PAGE_STATE.get(key, {})})
        shown = [element.value for element in list(app.error) + list(app.warning) + list(app.info)]
        outcome = "exception: " + str(app.exception[0].message) if app.exception else "ok"
        rows.append([title, f"{seconds:.1f} s", outcome, "; ".join(str(m)[:120] for m in shown) or "—"])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    print("\n" + table(["page", "first visit", "outcome", "messages"], rows))


if __name__ == "__main__":
    main()
