"""The ``importance`` and ``ablate`` commands of ``python -m analysis`` (registered in ``analysis.cli.main``)."""
from __future__ import annotations

import argparse
import sys

from analysis.methods.ablation import ablate, greedy_generate
from analysis.methods.ablation_spec import parse_ablation
from analysis.methods.importance import ABLATION_MODES, ablation_importance, gradient_importance, rank_correlation
from analysis.runtime.loading import load_model
from analysis.runtime.interventions import STREAM
from analysis.methods.metrics import METRICS, Metric, resolve_target
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
from analysis.runtime.tokens import display_token
from analysis.runtime.trace import encode_text


def _span(text: str) -> tuple[int, int]:
    start, _, end = text.partition(":")
    try:
        return int(start or 0), int(end or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a span: write START:END in tokens, e.g. 26:51") from None


def add_metric_arguments(parser: argparse.ArgumentParser) -> None:
    """Text and metric options shared by both commands."""
    parser.add_argument("--text", default=IOI_PROMPT, help="the text (default: the IOI sentence)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--target", default="", help="log-prob target token, e.g. ' Mary' (default: top prediction)")
    parser.add_argument("--span", type=_span, default=(0, 0), help="loss span START:END of predicted positions")


def add_importance_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``importance``."""
    add_metric_arguments(parser)
    parser.add_argument("--metric", choices=list(METRICS), default="loss")
    parser.add_argument("--method", choices=[*ABLATION_MODES, "gradient"], default="zero",
                        help="exact zero/mean ablation (with the gradient alongside), or the gradient only")
    parser.add_argument("--out", help="write one row per head as CSV")


def add_ablate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ablate``."""
    add_metric_arguments(parser)
    parser.add_argument("--heads", required=True,
                        help="e.g. 'L3H1,L5H*', 'L3H1:mean:0.5', 'L1H5:resample:0' or 'L2H0:stream:64' (a "
                             "streaming head: the first 4 tokens and the last 64) (default zero, scale 0)")
    parser.add_argument("--second-text", default=CORRUPTED_IOI_PROMPT,
                        help="text of the same token length that resample heads take their output from "
                             "(default: the corrupted IOI sentence)")
    parser.add_argument("--gen-tokens", type=int, default=10, help="greedy tokens before/after")


def _setup(args: argparse.Namespace):
    handle = load_model(args.model)
    ids = encode_text(handle, args.text, args.max_tokens)[0]
    target_id, warning = resolve_target(handle.tokenizer, args.target)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return handle, ids, target_id


def importance_command(args: argparse.Namespace) -> int:
    """Rank every head by the metric; print the top 10 and Spearman's ρ, optionally write a CSV."""
    handle, ids, target_id = _setup(args)
    metric = Metric(args.metric, args.span, target_id)
    frame = gradient_importance(handle, ids, metric, "zero" if args.method == "gradient" else args.method)
    frame = frame.rename(columns={"importance": "gradient_importance"})
    if args.method != "gradient":
        exact = ablation_importance(handle, ids, metric, args.method, progress=lambda done, total: print(
            f"exact ablation: layer {done}/{total}", end="\r" if done < total else "\n", file=sys.stderr))
        frame = exact.merge(frame.drop(columns=["layer", "head_index"]), on="head")
        print(f"Spearman rank correlation |gradient| vs |exact|: "
              f"{rank_correlation(frame['gradient_importance'], frame['importance']):.3f}")
    column = "gradient_importance" if args.method == "gradient" else "importance"
    print(frame.sort_values(column, ascending=False).head(10).to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"wrote {len(frame)} heads to {args.out}")
    return 0


def ablate_command(args: argparse.Namespace) -> int:
    """Apply the heads' interventions; print metrics, top-10 before/after, downstream heads, generations."""
    handle, ids, target_id = _setup(args)
    interventions = parse_ablation(args.heads, handle.info.n_layers, handle.info.n_heads)
    source_ids = encode_text(handle, args.second_text, args.max_tokens)[0]
    result = ablate(handle, ids, interventions, metric=Metric("loss", args.span, target_id), source_ids=source_ids)
    described = (f"{e.label} stream {e.window}" if e.mode == STREAM else f"{e.label} {e.mode} ×{e.scale:g}"
                 for e in interventions)
    print(f"{len(interventions)} heads: {', '.join(described)}")
    print("  ".join(f"{name} {value:+.4f}" for name, value in result.metrics.items()))
    if not result.top.empty:
        top = result.top.head(10).assign(token=lambda t: t["token"].map(display_token))
        print(top.drop(columns=["token_id"]).to_string(index=False, float_format="{:.4f}".format))
    print("downstream heads whose attention changed most:")
    print(result.downstream.to_string(index=False))
    if handle.info.causal and args.gen_tokens > 0:
        for title, chosen in (("before", []), ("after", interventions)):
            continuation = handle.tokenizer.decode(greedy_generate(handle, ids, chosen, args.gen_tokens, source_ids))
            print(f"{title}: {continuation!r}")
    return 0
