"""Activation patching: restart + batched rows vs the naive loop, the other grids, and the IOI findings.

Run with ``python -m bench.bench_patching`` (``--skip-findings`` for the timings only). One run; the exact head
grid is timed in the order naive, fast, fast, naive and each keeps its faster time, so a change of machine load
during the run favours neither.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from analysis.datasets.generators import ioi_dataset
from analysis.methods.importance import ablation_importance, rank_correlation
from analysis.methods.logit_attribution import decompose, head_attribution
from analysis.methods.metrics import Metric
from analysis.methods.patching import PatchingMetric, attribution_patching, head_patching, head_patching_naive, \
    head_position_patching, residual_patching
from analysis.datasets.probes import patching_pair
from analysis.runtime.forward import run_with_cache
from analysis.runtime.loading import load_model
from analysis.runtime.tokens import token_strings
from analysis.runtime.trace import encode_text
from bench.common import machine, table


def _timed(function):
    """(wall seconds, CPU seconds of this process, value): CPU time is less disturbed by other work on the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def _pair_inputs(handle, pair):
    clean, corrupted = (encode_text(handle, text)[0] for text in (pair.clean, pair.corrupted))
    token = lambda text: handle.tokenizer.encode(text, add_special_tokens=False)[0]  # noqa: E731
    return clean, corrupted, PatchingMetric("logit_diff", token(pair.target), token(pair.distractor))


def speed_rows(handle, pair_name: str) -> list[list[object]]:
    """Exact head grid naive vs fast (identical numbers), and the other analyses, on one built-in pair."""
    clean, corrupted, metric = _pair_inputs(handle, patching_pair(pair_name, handle.tokenizer))
    args = (handle, clean, corrupted, metric)
    methods = {"naive": lambda: head_patching_naive(*args)["effect"].to_numpy(),
               "fast": lambda: head_patching(*args)["effect"].to_numpy()}
    times: dict[str, tuple[float, float]] = {}
    values: dict[str, np.ndarray] = {}
    for name in [*methods, *reversed(methods)]:
        wall, cpu, values[name] = _timed(methods[name])
        times[name] = min((wall, cpu), times.get(name, (wall, cpu)))
    others = {
        "attribution patching (two forwards, one backward)": lambda: attribution_patching(*args)["effect"].to_numpy(),
        f"3 heads × {clean.shape[1]} positions (`head_position_patching`)":
            lambda: head_position_patching(*args, [(23, 3), (29, 1), (20, 0)]),
        f"residual stream, {handle.info.n_layers} layers × {clean.shape[1]} positions (`residual_patching`)":
            lambda: residual_patching(*args),
    }
    label = f"{handle.info.name}, {pair_name} pair ({clean.shape[1]} tokens)"
    naive_wall, naive_cpu = times["naive"]
    fast_wall, fast_cpu = times["fast"]
    rows = [
        [label, f"naive loop: one full forward per head ({handle.info.n_total_heads})", f"{naive_wall:.1f} s",
         f"{naive_cpu:.1f} s", "1.00×", "—"],
        [label, "restart at the head's layer + that layer's heads batched (`head_patching`)", f"{fast_wall:.1f} s",
         f"{fast_cpu:.1f} s", f"{naive_wall / fast_wall:.2f}× ({naive_cpu / fast_cpu:.2f}× CPU)",
         f"max abs(effect − naive) {np.abs(values['fast'] - values['naive']).max():.1e}"],
    ]
    for name, function in others.items():
        wall, cpu, value = _timed(function)
        note = (f"Spearman ρ vs exact {rank_correlation(value, values['fast']):.2f}"
                if isinstance(value, np.ndarray) else "—")
        rows.append([label, name, f"{wall:.2f} s", f"{cpu:.2f} s", f"{naive_cpu / cpu:.1f}× CPU", note])
    return rows


def _top(frame: pd.DataFrame, column: str, n: int = 6, largest: bool = True) -> str:
    ranked = frame.nlargest(n, column) if largest else frame.nsmallest(n, column)
    return ", ".join(f"{row.head} ({getattr(row, column):+.2f})" for row in ranked.itertuples())


def ioi_findings(handle, n_pairs: int) -> str:
    """Denoising effects averaged over ``n_pairs`` generated IOI pairs, against DLA and importance on the IOI pair."""
    effects = []
    for pair in ioi_dataset(n_pairs, seed=0).pairs:
        clean, corrupted, metric = _pair_inputs(handle, pair)
        if clean.shape[1] == corrupted.shape[1]:
            effects.append(head_patching(handle, clean, corrupted, metric)["effect"].to_numpy())
    clean, corrupted, metric = _pair_inputs(handle, patching_pair("ioi", handle.tokenizer))
    single = head_patching(handle, clean, corrupted, metric)
    patching = single[["head", "layer", "head_index"]].assign(effect=np.mean(effects, axis=0),
                                                              single=single["effect"])
    parts = decompose(handle, clean)
    dla = head_attribution(handle, parts, metric.target_id)
    dla["difference"] = dla["dla"] - head_attribution(handle, parts, metric.distractor_id)["dla"]
    importance = ablation_importance(handle, clean, Metric("logprob", target_id=metric.target_id))
    top_patching = set(patching.nlargest(6, "effect")["head"])
    top_dla = set(dla.nlargest(6, "difference")["head"])
    top_importance = set(importance.nsmallest(6, "delta")["head"])
    patterns = run_with_cache(handle, clean, sites=("pattern",)).stack("pattern")
    tokens = token_strings(handle.tokenizer, clean[0])
    attends = []
    for row in patching.nlargest(5, "effect").itertuples():
        weights = patterns[row.layer][0, row.head_index, -1]
        key = int(weights.argmax())
        attends.append(f"{row.head} → {tokens[key]!r} at {key} ({float(weights[key]):.2f})")
    return "\n".join([
        f"- the last token's strongest attention, top patching heads (IOI pair): {', '.join(attends)}",
        f"- denoising, mean over {len(effects)} generated IOI pairs: {_top(patching, 'effect')}; most negative: "
        f"{_top(patching, 'effect', 3, largest=False)}",
        f"- denoising, the IOI pair alone: {_top(patching, 'single')}",
        f"- direct logit attribution to ' Mary' (IOI pair): {_top(dla, 'dla')}; most negative: "
        f"{_top(dla, 'dla', 3, largest=False)}",
        f"- direct logit attribution to ' Mary' − ' John' (IOI pair): {_top(dla, 'difference')}; most negative: "
        f"{_top(dla, 'difference', 3, largest=False)}",
        f"- importance, Δ log-prob of ' Mary' when zero-ablated (IOI pair): {_top(importance, 'delta', largest=False)}",
        f"- shared top-6: patching ∩ DLA (difference) {sorted(top_patching & top_dla)}, patching ∩ importance "
        f"{sorted(top_patching & top_importance)}, DLA ∩ importance {sorted(top_dla & top_importance)}",
        f"- Spearman ρ over all heads: mean patching effect vs DLA to ' Mary' "
        f"{rank_correlation(patching['effect'], dla['dla']):.2f}, vs DLA to ' Mary' − ' John' "
        f"{rank_correlation(patching['effect'], dla['difference']):.2f}, "
        f"vs −Δ log-prob {rank_correlation(patching['effect'], -importance['delta']):.2f}",
    ])


def main() -> None:
    """Print the markdown tables for BENCHMARKS.md and the IOI findings for the README."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-findings", action="store_true")
    parser.add_argument("--pairs", type=int, default=20, help="generated IOI pairs averaged for the findings")
    args = parser.parse_known_args()[0]
    handle = load_model("smollm2-135m")
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n", flush=True)
    rows = speed_rows(handle, "ioi") + speed_rows(handle, "induction")
    print(table(["model and pair", "logit difference, denoise", "wall time", "CPU time", "vs naive loop", "check"],
                rows), flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    if not args.skip_findings:
        print("\nIOI findings (SmolLM2-135M):\n" + ioi_findings(handle, args.pairs))


if __name__ == "__main__":
    main()
