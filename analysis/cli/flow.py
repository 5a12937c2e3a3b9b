"""The ``rollout``, ``dla`` and ``compare`` commands of ``python -m analysis`` (registered in ``analysis.cli.main``)."""
from __future__ import annotations

import argparse
import sys

from analysis.methods.compare import compare_models, compare_texts
from analysis.heads import parse_heads
from analysis.runtime.loading import load_model
from analysis.methods.logit_attribution import attribution_terms, decompose, head_attribution, head_logit_lens
from analysis.methods.metrics import resolve_target
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
from analysis.methods.rollout import trace_flow
from analysis.runtime.tokens import display_token
from analysis.runtime.trace import encode_text, run_trace


def _add_text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=IOI_PROMPT, help="the text (default: the IOI sentence)")
    parser.add_argument("--max-tokens", type=int, default=256)


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rollout``."""
    _add_text_arguments(parser)
    parser.add_argument("--position", type=int, default=-1, help="output token position (default: the last)")
    parser.add_argument("--layer", type=int, default=-1, help="rollout after this layer (default: the last)")
    parser.add_argument("--heads", default="", help="only these heads, e.g. 'L12H3, L14H*' (default: all)")
    parser.add_argument("--exclude-sink", action="store_true", help="treat attention to the first token as a no-op")
    parser.add_argument("--edges", type=float, default=0.0,
                        help="also list flow edges to the output token carrying at least this share, e.g. 0.05")


def rollout_command(args: argparse.Namespace) -> int:
    """Print each input token's rollout contribution to the output token (and optionally the flow edges)."""
    handle = load_model(args.model)
    trace = run_trace(handle, args.text, max_tokens=args.max_tokens)
    info = handle.info
    heads = parse_heads(args.heads, info.n_layers, info.n_heads) if args.heads.strip() else None
    position, layer = args.position % trace.n_tokens, args.layer % info.n_layers
    flow = trace_flow(trace.layer_patterns, info.n_heads, layer, position, [position], heads, args.exclude_sink,
                      threshold=args.edges if args.edges > 0 else 1.0)
    print(f"rollout of token {position} {trace.tokens[position]!r} after layer {layer}"
          f"{' (sink excluded)' if args.exclude_sink else ''}:")
    for index, (token, share) in enumerate(zip(trace.tokens, flow.contributions)):
        print(f"{index:4d} {token!r:>16} {share:7.4f} {'█' * int(round(share * 50))}")
    if args.edges > 0:
        labels = [display_token(token) for token in trace.tokens]
        print(f"{len(flow.edges)} flow edges with share ≥ {args.edges:g} (layer: key → query):")
        for edge in flow.edges.itertuples():
            print(f"L{edge.layer:<3} {labels[edge.source]}({edge.source}) → {labels[edge.target]}({edge.target})"
                  f"  {edge.weight:.3f}")
    return 0


def add_dla_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dla``."""
    _add_text_arguments(parser)
    parser.add_argument("--target", default="", help="target token, e.g. ' Mary' (default: top prediction)")
    parser.add_argument("--top", type=int, default=10, help="heads listed on each side")
    parser.add_argument("--head", default="", help="also show what this head writes, e.g. L29H1")


def dla_command(args: argparse.Namespace) -> int:
    """Direct logit attribution of every head to the target at the last position, and the check of the sum."""
    handle = load_model(args.model)
    ids = encode_text(handle, args.text, args.max_tokens)[0]
    decomposition = decompose(handle, ids)
    target_id, warning = resolve_target(handle.tokenizer, args.target)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if target_id is None:
        target_id = int(decomposition.logits.argmax())
    terms = attribution_terms(handle, decomposition, target_id)
    target = handle.tokenizer.decode([target_id])
    print(f"target {target!r}: logit {decomposition.logits[target_id]:.4f}, sum of all terms {terms['dla'].sum():.4f}")
    print("by kind: " + "  ".join(f"{kind} {value:+.3f}" for kind, value in terms.groupby("kind")["dla"].sum().items()))
    heads = head_attribution(handle, decomposition, target_id).sort_values("dla", ascending=False)
    print("heads pushing it up:\n" + heads.head(args.top).to_string(index=False))
    print("heads pushing it down:\n" + heads.tail(args.top).iloc[::-1].to_string(index=False))
    if args.head:
        layer, head = parse_heads(args.head, handle.info.n_layers, handle.info.n_heads)[0]
        promoted, suppressed = head_logit_lens(handle, decomposition, layer, head)
        for title, table in (("promotes", promoted), ("suppresses", suppressed)):
            print(f"L{layer}H{head} {title}: " + ", ".join(f"{t!r} {v:+.2f}" for t, v in zip(table.token, table.logit)))
    return 0


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``."""
    _add_text_arguments(parser)
    parser.add_argument("--second-text", default=CORRUPTED_IOI_PROMPT, help="the other text (same model)")
    parser.add_argument("--second-model", default="", help="compare this model on --text instead")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--out", help="write every head's distance as CSV")


def compare_command(args: argparse.Namespace) -> int:
    """Rank heads by the Jensen–Shannon distance of their patterns between two texts or two models."""
    first = run_trace(load_model(args.model), args.text, max_tokens=args.max_tokens)
    if args.second_model:
        second = run_trace(load_model(args.second_model), args.text, max_tokens=args.max_tokens)
        frame = compare_models(first, second)
    else:
        second = run_trace(load_model(args.model), args.second_text, max_tokens=args.max_tokens)
        frame = compare_texts(first, second)
    print(frame.head(args.top).to_string(index=False, float_format="{:.4f}".format))
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"wrote {len(frame)} heads to {args.out}")
    return 0
