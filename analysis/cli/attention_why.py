"""The ``qk`` command of ``python -m analysis``: why a head attends from one token to another (QK attribution)."""
from __future__ import annotations

import argparse

from analysis.heads import parse_heads
from analysis.methods.qk_attribution import qk_breakdown
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
