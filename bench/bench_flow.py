"""Rollout, direct logit attribution and comparison timings, as ratios to one plain trace of the same text.

Run with ``python -m bench.bench_flow``.
"""
from __future__ import annotations

from analysis.methods.compare import compare_texts
from analysis.runtime.loading import load_model
from analysis.methods.logit_attribution import attribution_terms, decompose
from analysis.datasets.probes import IOI_PROMPT, repeated_random_text
from analysis.methods.rollout import trace_flow
from analysis.runtime.trace import encode_text, run_trace
from bench.common import best_of, machine, table


def main() -> None:
    """Print each step's time next to one trace of the same text."""
    handle = load_model("smollm2-135m")
    rows = []
    for label, text in (("IOI prompt", IOI_PROMPT), ("256-token text", repeated_random_text(handle.tokenizer, 128))):
        trace = run_trace(handle, text)
        ids = encode_text(handle, text)[0]
        trace_seconds = best_of(lambda: run_trace(handle, text), repeats=3)
        decomposition = decompose(handle, ids)
        target = int(decomposition.logits.argmax())
        steps = {
            "rollout rows, masses and flow edges to the last token (all layers)": lambda: trace_flow(
                trace.layer_patterns, trace.n_heads, trace.n_layers - 1, trace.n_tokens - 1, range(trace.n_tokens),
                threshold=0.02),
            "DLA decomposition (forward + split)": lambda: decompose(handle, ids),
            "DLA terms for one target": lambda: attribution_terms(handle, decomposition, target),
            "compare two texts (270 heads)": lambda: compare_texts(trace, trace),
        }
        for step, function in steps.items():
            seconds = best_of(function, repeats=3)
            rows.append([label, trace.n_tokens, step, f"{seconds * 1000:.1f} ms", f"{seconds / trace_seconds:.2f}×"])
        rows.append([label, trace.n_tokens, "one trace (reference)", f"{trace_seconds * 1000:.1f} ms", "1.00×"])
    print(f"Machine: {machine()}\n")
    print(table(["text", "tokens", "step", "time", "/ one trace"], rows))


if __name__ == "__main__":
    main()
