"""All-heads ablation (naive loop vs batched rows vs clean-prefix reuse) and the ablation lab's latency.

Run with ``python -m bench.bench_ablation`` (add ``--app`` to time a slider move in the real page via AppTest).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from analysis.methods.ablation import ablate, clean_run, greedy_generate
from analysis.runtime.forward import run_with_cache
from analysis.methods.importance import ablation_importance, ablation_importance_naive, gradient_importance
from analysis.runtime.interventions import HeadIntervention, compile_edits
from analysis.runtime.loading import load_model
from analysis.methods.metrics import Metric, metric_delta, reference
from analysis.datasets.probes import EXAMPLE_TEXTS
from analysis.runtime.trace import encode_text
from bench.common import machine, run_times, table

TEXT = EXAMPLE_TEXTS["Paragraph"] + "\n\n" + EXAMPLE_TEXTS["Code snippet"] + "\n" + EXAMPLE_TEXTS["IOI sentence"]


def _timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def _batched_rows_only(handle, ids) -> np.ndarray:
    """One full forward per layer with that layer's heads as batch rows (no prefix reuse)."""
    info = handle.info
    ref = reference(run_with_cache(handle, ids).logits, ids)
    deltas = np.zeros((info.n_layers, info.n_heads))
    for layer in range(info.n_layers):
        edits = compile_edits([[HeadIntervention(layer, h)] for h in range(info.n_heads)], info.n_layers, info.n_heads)
        deltas[layer] = metric_delta(run_with_cache(handle, ids, edits=edits).logits, ids, Metric("loss"), ref).numpy()
    return deltas.reshape(-1)


def all_heads_rows(handle) -> list[list[object]]:
    """Exact zero ablation of every head on a 101-token text, Δ loss, three ways.

    The methods run in the order A B C C B A and each keeps its faster time, so a change of machine load
    during the run does not favour one method.
    """
    ids = encode_text(handle, TEXT, max_tokens=101)[0]
    methods = {
        "naive": lambda: ablation_importance_naive(handle, ids, Metric("loss"))["delta"].to_numpy(),
        "batched": lambda: _batched_rows_only(handle, ids),
        "prefix": lambda: ablation_importance(handle, ids, Metric("loss"))["delta"].to_numpy(),
    }
    seconds: dict[str, float] = {}
    values: dict[str, np.ndarray] = {}
    for name in [*methods, *reversed(methods)]:
        elapsed, values[name] = _timed(methods[name])
        seconds[name] = min(elapsed, seconds.get(name, elapsed))
    gradient_s, _ = _timed(lambda: gradient_importance(handle, ids, Metric("loss")))
    naive_s = seconds["naive"]
    return [
        [f"naive loop: one full forward per head ({handle.info.n_total_heads} heads, {ids.shape[1]} tokens)",
         f"{naive_s:.1f} s", "1.00×", "—"],
        ["batched rows only: one full forward per layer, 9 rows", f"{seconds['batched']:.1f} s",
         f"{naive_s / seconds['batched']:.2f}×", f"{np.abs(values['batched'] - values['naive']).max():.1e}"],
        ["clean-prefix reuse: layers ≥ l only, 9 rows (`ablation_importance`)", f"{seconds['prefix']:.1f} s",
         f"{naive_s / seconds['prefix']:.2f}×", f"{np.abs(values['prefix'] - values['naive']).max():.1e}"],
        ["gradient importance (one forward + backward, estimate only)", f"{gradient_s:.2f} s",
         f"{naive_s / gradient_s:.0f}×", "—"],
    ]


def lab_rows(handle) -> list[list[object]]:
    """The lab's backend update on a 64-token text: ablate() against a cached clean run, and generation."""
    ids = encode_text(handle, TEXT, max_tokens=64)[0]
    clean_s, clean = _timed(lambda: clean_run(handle, ids))
    rows = [[f"clean run, once per text ({ids.shape[1]} tokens)", f"{clean_s:.2f} s"]]
    selections = {
        "1 head in layer 15 (L15H4)": [HeadIntervention(15, 4)],
        "5 heads, earliest layer 5": [HeadIntervention(layer, 1) for layer in (5, 9, 14, 20, 26)],
        "worst case: a layer-0 head (full forward)": [HeadIntervention(0, 2, "mean", 0.5)],
    }
    for label, selection in selections.items():
        seconds = statistics.median(run_times(lambda: ablate(handle, ids, selection, clean=clean), repeats=5))
        rows.append([f"lab update (ablate): {label}", f"{seconds:.3f} s"])
    generation = statistics.median(run_times(
        lambda: greedy_generate(handle, ids, selections["1 head in layer 15 (L15H4)"], 8), repeats=2))
    rows.append(["greedy generation, 8 tokens after ablation (no KV cache)", f"{generation:.2f} s"])
    return rows


def app_rows() -> list[list[object]]:
    """A slider move in the real lab page (AppTest: script rerun incl. figures), generation off and on."""
    from streamlit.testing.v1 import AppTest

    app_file = str(Path(__file__).resolve().parent.parent / "app.py")
    rows = []
    for gen_tokens in ("0", "8"):
        app = AppTest.from_file(app_file, default_timeout=300)
        app.query_params.update(text=TEXT, max_tokens="64", ablate="L15H4:zero:0", gen_tokens=gen_tokens)
        app.switch_page("pages/ablation_lab.py")
        app.run()
        times = []
        for value in (0.5, 0.25, 1.5, 0.75):
            slider = app.slider(key="w_lab_scale_L15H4")
            start = time.perf_counter()
            slider.set_value(value).run()
            times.append(time.perf_counter() - start)
        rows.append([f"lab page rerun after a slider move (AppTest), {gen_tokens} generated tokens",
                     f"{statistics.median(times):.2f} s"])
    return rows


def main() -> None:
    """Print the ablation timings as markdown tables."""
    handle = load_model("smollm2-135m")
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    print(table(["all-heads exact ablation, Δ loss", "time", "speed-up vs naive", "max |Δ − naive|"],
                all_heads_rows(handle)))
    lab = lab_rows(handle) + (app_rows() if "--app" in sys.argv else [])
    print()
    print(table(["ablation lab, SmolLM2", "time (median)"], lab))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
