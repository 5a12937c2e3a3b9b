"""Fused attention where no pattern is needed: the same work on this engine and on the engine before it.

On SmolLM2-135M: the trace (one forward keeping the residual stream and every head's pooled thumbnail) at
256 / 1,024 / 4,096 tokens, a clean run keeping the stream at 1,024 tokens, one lab update (one head removed,
64-token text) and the exact head-patching grid of the IOI pair. The previous engine (every call eager, the
trace pooling each layer's full pattern) runs from an export of its commit in a subprocess, alternating with
this engine, task by task, so both see the same load. Run: ``python -m bench.bench_fused``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench.common import machine, table

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS_COMMIT = "a13ae3e"  # the last engine that ran every call with eager attention
TRACE_LENGTHS = (256, 1024, 4096)

TASKS = """
import json, sys, time
import torch
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT, repeated_random_text
from analysis.methods.ablation import ablate, clean_run
from analysis.methods.patching import PatchingMetric, head_patching
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text, run_trace

handle = load_model("smollm2-135m")
torch.set_num_threads(int(sys.argv[2]))

def text(n):
    return repeated_random_text(handle.tokenizer, n // 2 + 8, seed=n)

def task(name):
    if name.startswith("trace"):
        n = int(name[5:])
        return lambda: run_trace(handle, text(n), max_tokens=n)
    if name == "clean1024":
        ids = encode_text(handle, text(1024), 1024)[0]
        return lambda: clean_run(handle, ids)
    if name == "lab64":
        ids = encode_text(handle, text(64), 64)[0]
        clean = clean_run(handle, ids)
        return lambda: ablate(handle, ids, [HeadIntervention(15, 1)], clean=clean)
    clean, corrupted = (encode_text(handle, t)[0] for t in (IOI_PROMPT, CORRUPTED_IOI_PROMPT))
    return lambda: head_patching(handle, clean, corrupted, PatchingMetric("logit_diff"))

name = sys.argv[1]
work = task(name)
if not name.startswith("trace4096"):
    work()  # warm-up
start = time.perf_counter()
work()
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

NAMES = {**{f"trace{n}": f"trace, {n:,} tokens" for n in TRACE_LENGTHS}, "clean1024": "clean run, 1,024 tokens",
         "lab64": "lab update (64 tokens)", "patching": "head patching grid (IOI pair)"}


def export(commit: str) -> Path:
    """The project's files at ``commit`` in a temporary folder (``git archive``; the repository is not touched)."""
    folder = Path(tempfile.mkdtemp(prefix="atlas-previous-"))
    archive = folder / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--output", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "tree", filter="data")
    return folder / "tree"


def timed(tree: Path, name: str, threads: int) -> float:
    """Seconds of one run of task ``name`` on the engine in ``tree`` (a fresh process: same start for both)."""
    output = subprocess.run([sys.executable, "-c", TASKS, name, str(threads)], cwd=tree,
                            env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    previous = export(PREVIOUS_COMMIT)
    threads = os.cpu_count() or 1
    rows = []
    for name in NAMES:
        before = timed(previous, name, threads)
        now = timed(ROOT, name, threads)
        rows.append([NAMES[name], f"{before:.2f} s", f"{now:.2f} s", f"{before / now:.1f}×"])
        print(rows[-1], flush=True)
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d')}\n")
    print(table(["task (SmolLM2-135M)", f"previous engine ({PREVIOUS_COMMIT})", "fused where no pattern",
                 "speed-up"], rows))


if __name__ == "__main__":
    main()
