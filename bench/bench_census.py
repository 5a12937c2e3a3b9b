"""Head census timings: all scores of all heads from one forward per input (text and probe).

Run with ``python -m bench.bench_census``.
"""
from __future__ import annotations

from analysis.methods.census import head_census
from analysis.runtime.loading import load_model
from analysis.datasets.probes import IOI_PROMPT, repeated_random_text
from analysis.runtime.trace import run_trace
from bench.common import best_of, machine, table


def main() -> None:
    """Print census time next to one plain trace of the same text (the census runs two forwards)."""
    rows = []
    for name in ("smollm2-135m", "minilm-l6"):
        handle = load_model(name)
        long_text = repeated_random_text(handle.tokenizer, length=64, seed=1)
        for label, text in (("IOI prompt", IOI_PROMPT), ("128-token text", long_text)):
            census_seconds = best_of(lambda: head_census(handle, text), repeats=3)
            trace_seconds = best_of(lambda: run_trace(handle, text), repeats=3)
            rows.append([name, label, handle.info.n_total_heads, f"{census_seconds:.2f} s",
                         f"{trace_seconds:.2f} s", f"{census_seconds / trace_seconds:.1f}×"])
    print(f"Machine: {machine()}\n")
    print(table(["model", "text", "heads", "census (text + 64-token probe)", "one trace", "census / trace"], rows))


if __name__ == "__main__":
    main()
