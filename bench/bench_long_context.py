"""QK attribution, retrieval and streaming speed on SmolLM2 (2-core CPU).

- one QK cell at 256 tokens: from scratch (the run kept up to the head's layer, then the cell and its
  competitor), and from a reused run (another cell of the same layer), against one plain forward;
- the streaming grid (every head restricted in turn) at 256 tokens, against one forward;
- one needle probe (greedy answer + the forward reading its attention rows) at 512 tokens.
Run: ``python -m bench.bench_long_context``.
"""
from __future__ import annotations

import torch

from analysis.datasets.haystack import NEEDLES
from analysis.methods.qk_attribution import component_run, qk_breakdown
from analysis.methods.retrieval import retrieval_sweep
from analysis.methods.streaming import streaming_scores
from analysis.runtime.forward import run_with_cache
from analysis.runtime.loading import load_model
from bench.common import best_of, machine, table


def main() -> None:
    handle = load_model("smollm2-135m")
    ids = torch.randint(200, 40000, (1, 256), generator=torch.Generator().manual_seed(0))
    forward = best_of(lambda: run_with_cache(handle, ids), 3)
    fresh = best_of(lambda: qk_breakdown(handle, ids, 18, 6, 255, 120), 3)
    run = component_run(handle, ids, 18)
    reused = best_of(lambda: qk_breakdown(handle, ids, 18, 6, 200, 80, run=run), 3)
    grid = best_of(lambda: streaming_scores(handle, ids, 4, 64), 1)
    probe = best_of(lambda: retrieval_sweep(handle, (512,), (0.5,), NEEDLES[:1], n_tokens=8), 1)
    print(machine())
    print(table(["what (SmolLM2, 256 tokens unless said)", "seconds", "× one forward"], [
        ["one forward", f"{forward:.3f}", "1.0"],
        ["QK cell + competitor, from scratch", f"{fresh:.3f}", f"{fresh / forward:.1f}"],
        ["QK cell + competitor, run reused", f"{reused:.3f}", f"{reused / forward:.1f}"],
        ["streaming grid (270 heads)", f"{grid:.2f}", f"{grid / forward:.0f}"],
        ["one needle probe at 512 tokens (8 answer tokens)", f"{probe:.2f}", f"{probe / forward:.0f}"],
    ]))


if __name__ == "__main__":
    main()
