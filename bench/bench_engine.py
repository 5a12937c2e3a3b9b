"""The runtime on the model's own code: all-heads exact ablation and greedy generation, new path vs old.

For SmolLM2-135M and Gemma-3-270M: exact zero ablation of every head (naive loop of full forwards vs
layer restart + batched rows), and 8 greedy tokens with one head removed (KV cache vs a full forward per
token). The previous engine (a hand-written LLaMA forward, no KV cache) is measured in the same run from a
git worktree of its last commit, in a subprocess, on the same text. Run: ``python -m bench.bench_engine``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.methods.ablation import greedy_generate, greedy_generate_uncached
from analysis.methods.importance import ablation_importance, ablation_importance_naive
from analysis.methods.metrics import Metric
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from bench.bench_ablation import TEXT
from bench.common import machine, table

OLD_ENGINE_COMMIT = "6ce69c8"  # the last commit with the hand-written LLaMA/BERT forward
ROOT = Path(__file__).resolve().parent.parent
GENERATED = 8
METRICS = {"Δ loss (every position unembedded)": Metric("loss"),
           "Δ log-prob of the top token (last position only)": Metric("logprob")}

_OLD_SCRIPT = """
import json, sys, time
from analysis.ablation import greedy_generate
from analysis.importance import ablation_importance
from analysis.interventions import HeadIntervention
from analysis.loading import load_model
from analysis.metrics import Metric
from analysis.trace import encode_text
text, generated = sys.argv[1], int(sys.argv[2])
handle = load_model("smollm2-135m")
ids = encode_text(handle, text, max_tokens=101)[0]
start = time.perf_counter()
deltas = ablation_importance(handle, ids, Metric("loss"))["delta"].tolist()
ablation_s = time.perf_counter() - start
short = encode_text(handle, text, max_tokens=64)[0]
start = time.perf_counter()
tokens = greedy_generate(handle, short, [HeadIntervention(15, 1)], generated)
print(json.dumps({"ablation_s": ablation_s, "deltas": deltas, "generate_s": time.perf_counter() - start,
                  "tokens": tokens}))
"""


def old_engine() -> dict | None:
    """Times of the previous engine on SmolLM2, from a worktree of its commit (None if git cannot make one)."""
    folder = Path(tempfile.mkdtemp(prefix="atlas-old-engine-")) / "tree"
    made = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), OLD_ENGINE_COMMIT],
                          capture_output=True, text=True)
    if made.returncode != 0:
        print(f"(old engine not measured: {made.stderr.strip()})")
        return None
    try:
        output = subprocess.run([sys.executable, "-c", _OLD_SCRIPT, TEXT, str(GENERATED)], cwd=folder,
                                env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True, text=True,
                                check=True).stdout
        return json.loads(output.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True)


def _timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def ablation_rows(handle) -> list[list[object]]:
    """Exact zero ablation of every head on a 101-token text: naive loop vs ``ablation_importance``, per metric."""
    ids = encode_text(handle, TEXT, max_tokens=101)[0]
    rows = []
    for title, metric in METRICS.items():
        naive_s, naive = _timed(lambda: ablation_importance_naive(handle, ids, metric)["delta"].to_numpy())
        fast_s, fast = _timed(lambda: ablation_importance(handle, ids, metric)["delta"].to_numpy())
        rows.append([handle.info.name, title, f"{naive_s:.1f} s", f"{fast_s:.1f} s", f"{naive_s / fast_s:.2f}×",
                     f"{np.abs(fast - naive).max():.1e}"])
    return rows


def generation_rows(handle) -> list[list[object]]:
    """Greedy tokens with one head removed: KV cache vs a full forward per token (64-token prompt)."""
    ids = encode_text(handle, TEXT, max_tokens=64)[0]
    removed = [HeadIntervention(handle.info.n_layers // 2, 1)]
    greedy_generate(handle, ids, removed, 1)  # warm-up
    cached_s, cached = _timed(lambda: greedy_generate(handle, ids, removed, GENERATED))
    full_s, full = _timed(lambda: greedy_generate_uncached(handle, ids, removed, GENERATED))
    return [[f"{handle.info.name}: {GENERATED} tokens, full forward per token", f"{full_s:.2f} s", "1.00×", "—"],
            [f"{handle.info.name}: {GENERATED} tokens, KV cache (`greedy_generate`)", f"{cached_s:.2f} s",
             f"{full_s / cached_s:.1f}×", "same tokens" if cached == full else "DIFFERENT tokens"]]


def main() -> None:
    """Print the tables for BENCHMARKS.md."""
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    handles = [load_model(name) for name in ("smollm2-135m", "gemma3-270m")]
    header = ["model", "all-heads exact zero ablation, 101 tokens", "naive loop", "restart + batched rows",
              "speed-up", "max |difference|"]
    print(table(header, [row for handle in handles for row in ablation_rows(handle)]) + "\n")
    generation = [row for handle in handles for row in generation_rows(handle)]
    old = old_engine()
    if old is not None:
        smollm2 = handles[0]
        ids = encode_text(smollm2, TEXT, max_tokens=101)[0]
        new_s, new = _timed(lambda: ablation_importance(smollm2, ids, Metric("loss"))["delta"].to_numpy())
        print(table(["SmolLM2, previous engine vs now", "previous", "now", "ratio", "max |difference|"], [
            ["all-heads exact ablation (restart + batched rows)", f"{old['ablation_s']:.1f} s", f"{new_s:.1f} s",
             f"{old['ablation_s'] / new_s:.2f}×", f"{np.abs(np.array(old['deltas']) - new).max():.1e}"],
        ]) + "\n")
        generation.insert(0, [f"smollm2-135m: {GENERATED} tokens, previous engine (no cache)",
                              f"{old['generate_s']:.2f} s", "—", "—"])
    print(table(["greedy generation, one head removed", "time", "speed-up", "check"], generation))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
