"""``python -m analysis head L17H4`` and ``python -m analysis composition``: what a head computes, from its weights."""
from __future__ import annotations

import argparse
import sys

from analysis.heads import HeadSpecError, head_label, parse_heads
from analysis.methods.census import head_census
from analysis.methods.composition import KINDS
from analysis.methods.weight_scores import composition_scores, ov_top_pairs, weight_notes, weights_available
from analysis.runtime.handle import ModelHandle
from analysis.runtime.loading import load_model


def _one_head(handle: ModelHandle, spec: str) -> tuple[int, int]:
    heads = parse_heads(spec, handle.info.n_layers, handle.info.n_heads)
    if len(heads) != 1:
        raise HeadSpecError(f"'{spec}' names {len(heads)} heads; name one, like L17H4.")
    return heads[0]


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the head command."""
    parser.add_argument("head", help="the head, e.g. L17H4 (zero-based)")
    parser.add_argument("--text", default=None, help="also score the census on this text (default: the probe)")
    parser.add_argument("--pairs", type=int, default=10, help="OV token pairs shown")
    parser.add_argument("--partners", type=int, default=3, help="composition partners shown per kind and side")


def head_command(args: argparse.Namespace) -> int:
    """Print one head's profile: census label and scores, OV top pairs, composition partners."""
    handle = load_model(args.model)
    layer, head = _one_head(handle, args.head)
    label = head_label(layer, head)
    row = head_census(handle, args.text).set_index("head").loc[label]
    print(f"{label} of {handle.info.name}: census label {row['label'] or 'none'}")
    print(row.drop(["layer", "head_index", "label"]).to_string())
    for note in weight_notes(handle):
        print(f"note: {note}")
    if not weights_available(handle):
        return 0
    if handle.info.causal:
        print("\nStrongest OV token pairs (read -> written) over the vocabulary sample:")
        print(ov_top_pairs(handle, layer, head, args.pairs)[["read", "written", "value"]].to_string(index=False))
    for kind in KINDS:
        table = composition_scores(handle, kind)
        baseline = table["baseline"].iloc[0]
        upstream = table[table["target"] == label].nlargest(args.partners, "score")
        downstream = table[table["source"] == label].nlargest(args.partners, "score")
        print(f"\n{kind}-composition (random baseline {baseline:.3f}):")
        print("  reads from: " + (", ".join(f"{s} {v:.3f}" for s, v in zip(upstream["source"], upstream["score"]))
                                  or "none"))
        print("  read by:    " + (", ".join(f"{t} {v:.3f}" for t, v in zip(downstream["target"], downstream["score"]))
                                  or "none"))
    return 0


def add_composition_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the composition command."""
    parser.add_argument("--kind", choices=KINDS, default="K", help="Q-, K- or V-composition")
    parser.add_argument("--target", default=None, help="only pairs into this head, e.g. L17H4 (default: all pairs)")
    parser.add_argument("--top", type=int, default=20, help="rows printed (0: all)")
    parser.add_argument("--out", default=None, help="write every row as .csv or .json here")


def composition_command(args: argparse.Namespace) -> int:
    """Print the strongest composition pairs (source, target, kind, score, baseline)."""
    handle = load_model(args.model)
    if not weights_available(handle):
        print(" ".join(weight_notes(handle)), file=sys.stderr)
        return 2
    table = composition_scores(handle, args.kind)
    if args.target:
        table = table[table["target"] == head_label(*_one_head(handle, args.target))]
    table = table.sort_values("score", ascending=False)[["source", "target", "kind", "score", "baseline"]]
    if args.out:
        table.to_json(args.out, orient="records", indent=1) if args.out.endswith(".json") else table.to_csv(
            args.out, index=False)
    print((table.head(args.top) if args.top else table).to_string(index=False))
    return 0
