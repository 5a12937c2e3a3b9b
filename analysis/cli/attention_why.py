"""The ``qk``, ``retrieval`` and ``streaming`` commands of ``python -m analysis``: why a head attends from one
token to another (QK attribution), and the long-context head types."""
from __future__ import annotations

import argparse

from analysis.heads import parse_heads
from analysis.methods.qk_attribution import qk_breakdown
from analysis.methods.retrieval import DEFAULT_DEPTHS, DEFAULT_LENGTHS, RETRIEVAL_THRESHOLD, retrieval_sweep
from analysis.methods.streaming import DEFAULT_SINK, DEFAULT_WINDOW, STREAMING_THRESHOLD, kv_cache_bytes, \
    restrict_heads, streaming_scores
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from analysis.datasets.probes import IOI_PROMPT


def add_qk_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``qk``."""
    parser.add_argument("--text", default=IOI_PROMPT, help="the text (default: the IOI sentence)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--head", required=True, help="the head, e.g. L18H6")
    parser.add_argument("--query", type=int, default=-1, help="query position (default: the last)")
    parser.add_argument("--key", type=int, required=True, help="key position (≤ the query)")
    parser.add_argument("--top", type=int, default=10, help="terms listed")
    parser.add_argument("--out", default="", help="write every term to this CSV file")


def qk_command(args: argparse.Namespace) -> int:
    """Print the largest query × key terms of one cell (and of its competitor); optionally every term as CSV."""
    handle = load_model(args.model)
    ids, _ = encode_text(handle, args.text, max_tokens=args.max_tokens)
    (layer, head), *rest = parse_heads(args.head, handle.info.n_layers, handle.info.n_heads) or [(None, None)]
    if layer is None or rest:
        raise ValueError("--head names one head, e.g. L18H6.")
    query = args.query % ids.shape[1]
    breakdown = qk_breakdown(handle, ids, layer, head, query, args.key)
    for cell, what in ((breakdown.cell, "key"), (breakdown.competitor, "competitor")):
        if cell is None:
            continue
        terms = cell.terms()
        print(f"L{layer}H{head} query {query} → {what} {cell.key}: logit {cell.logit:.4f} "
              f"(sum of {len(terms)} terms {terms['term'].sum():.4f})")
        print(terms.reindex(terms["term"].abs().sort_values(ascending=False).index).head(args.top)
              .to_string(index=False))
    if args.out:
        breakdown.cell.terms().to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def _numbers(text: str, kind=int) -> tuple:
    return tuple(kind(part) for part in text.replace(",", " ").split())


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``retrieval``."""
    parser.add_argument("--lengths", default=" ".join(map(str, DEFAULT_LENGTHS)), help="haystack lengths in tokens")
    parser.add_argument("--depths", default=" ".join(map(str, DEFAULT_DEPTHS)), help="needle depths, 0 (start) – 1")
    parser.add_argument("--needles", type=int, default=2, help="how many of the built-in needles")
    parser.add_argument("--gen-tokens", type=int, default=8, help="greedy answer tokens")
    parser.add_argument("--out", default="", help="write the per-head scores to this CSV file")


def retrieval_command(args: argparse.Namespace) -> int:
    """Print the retrieval heads of the needle probe (and each trial's answer)."""
    from analysis.datasets.haystack import NEEDLES

    handle = load_model(args.model)
    result = retrieval_sweep(handle, _numbers(args.lengths), _numbers(args.depths, float), NEEDLES[:args.needles],
                             args.gen_tokens, on_progress=lambda done, total: print(f"probe {done}/{total}"))
    print(result.trials.to_string(index=False))
    scores = result.scores.sort_values("retrieval", ascending=False)
    above = float((result.scores["retrieval"] > RETRIEVAL_THRESHOLD).mean())
    print(f"{above:.1%} of heads score above {RETRIEVAL_THRESHOLD}")
    print(scores.head(10).to_string(index=False))
    if args.out:
        result.scores.to_csv(args.out, index=False)
    return 0


def add_streaming_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``streaming``."""
    parser.add_argument("--text", default="", help="the text (default: the natural-text sample)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--sink", type=int, default=DEFAULT_SINK)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--threshold", type=float, default=STREAMING_THRESHOLD,
                        help="a head is a streaming head if restricting it changes the loss by less (nats)")
    parser.add_argument("--out", default="", help="write the per-head scores to this CSV file")


def streaming_command(args: argparse.Namespace) -> int:
    """Per-head loss change under the sink + window restriction; then all streaming heads at once."""
    from analysis.datasets.natural_text import NATURAL_SENTENCES

    handle = load_model(args.model)
    ids, _ = encode_text(handle, args.text or " ".join(NATURAL_SENTENCES), max_tokens=args.max_tokens)
    scores = streaming_scores(handle, ids, args.sink, args.window,
                              on_progress=lambda done, total: print(f"layer {done}/{total}"))
    streaming = scores[scores["delta_loss"].abs() < args.threshold]
    heads = list(zip(streaming["layer"], streaming["head_index"]))
    total, saved = kv_cache_bytes(handle.info, heads, ids.shape[1], args.sink, args.window)
    print(scores.sort_values("delta_loss").to_string(index=False))
    print(f"{len(heads)} streaming heads (|Δ loss| < {args.threshold}) of {len(scores)} on {ids.shape[1]} tokens; "
          f"restricting all at once changes the loss by {restrict_heads(handle, ids, heads, args.sink, args.window):+.4f}"
          f" and saves {saved / 2**20:.2f} of {total / 2**20:.2f} MiB of 16-bit KV cache")
    if args.out:
        scores.to_csv(args.out, index=False)
    return 0
