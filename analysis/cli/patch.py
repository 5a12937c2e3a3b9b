"""The ``patch`` command of ``python -m analysis``: activation patching between a clean and a corrupted prompt."""
from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from analysis.heads import parse_heads
from analysis.methods.importance import rank_correlation
from analysis.methods.metrics import resolve_target
from analysis.methods.patching import DIRECTIONS, PATCHING_METRICS, PatchingMetric, attribution_patching, \
    head_patching, head_position_patching, residual_patching
from analysis.methods.patching_runs import check_patchable
from analysis.datasets.probes import PATCHING_PAIRS, patching_pair
from analysis.runtime.loading import load_model
from analysis.runtime.tokens import display_token
from analysis.runtime.trace import encode_text

ANALYSES = {
    "heads": "every head patched alone (exact), with the attribution-patching estimate and their rank correlation",
    "attribution": "attribution patching only: the linear estimate for every head (two forwards, one backward)",
    "positions": "the heads of --heads patched one position at a time",
    "residual": "the residual stream entering each layer patched at one position at a time",
}


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt pair and metric options shared by ``patch`` and ``circuit``."""
    parser.add_argument("--pair", choices=list(PATCHING_PAIRS),
                        help="a built-in pair (default: ioi unless --clean and --corrupted are given)")
    parser.add_argument("--clean", help="the clean prompt (the model gives the target)")
    parser.add_argument("--corrupted", help="the corrupted prompt, of the same token length")
    parser.add_argument("--target", help="target token, e.g. ' Mary' (default: the clean run's top prediction)")
    parser.add_argument("--distractor", help="distractor token, e.g. ' John' (default: the corrupted run's top)")
    parser.add_argument("--metric", choices=list(PATCHING_METRICS), default="logit_diff")
    parser.add_argument("--max-tokens", type=int, default=256)


def pair_inputs(args: argparse.Namespace, handle) -> tuple[str, str, torch.Tensor, torch.Tensor, PatchingMetric]:
    """(clean text, corrupted text, clean ids, corrupted ids, metric) from the pair options."""
    if args.clean and args.corrupted and not args.pair:
        clean_text, corrupted_text, target, distractor = args.clean, args.corrupted, args.target, args.distractor
    else:
        pair = patching_pair(args.pair or "ioi", handle.tokenizer)
        clean_text, corrupted_text = args.clean or pair.clean, args.corrupted or pair.corrupted
        target, distractor = args.target or pair.target, args.distractor or pair.distractor
    clean = encode_text(handle, clean_text, args.max_tokens)[0]
    corrupted = encode_text(handle, corrupted_text, args.max_tokens)[0]
    metric = PatchingMetric(args.metric, _token_id(handle.tokenizer, target, "target"),
                            _token_id(handle.tokenizer, distractor, "distractor"))
    return clean_text, corrupted_text, clean, corrupted, metric


def add_patch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``patch``."""
    add_pair_arguments(parser)
    parser.add_argument("--direction", choices=list(DIRECTIONS), default="denoise",
                        help="denoise: corrupted run with clean activations; noise: the reverse")
    parser.add_argument("--analysis", choices=list(ANALYSES), default="heads",
                        help="; ".join(f"{name}: {text}" for name, text in ANALYSES.items()))
    parser.add_argument("--heads", default="", help="heads for --analysis positions, e.g. 'L23H3,L29H1'")
    parser.add_argument("--top", type=int, default=10, help="rows printed")
    parser.add_argument("--out", help="write every row as CSV")


def _token_id(tokenizer, text: str | None, role: str) -> int | None:
    token_id, warning = resolve_target(tokenizer, text or "")
    if warning:
        print(f"warning ({role}): {warning}", file=sys.stderr)
    return token_id


def progress_printer(label: str):
    """A progress callback printing 'label: done/total' on stderr."""
    def report(done: int, total: int) -> None:
        print(f"{label}: {done}/{total}", end="\r" if done < total else "\n", file=sys.stderr)
    return report


def patch_command(args: argparse.Namespace) -> int:
    """Run the chosen patching analysis; print the baseline and the largest effects, optionally write a CSV."""
    handle = load_model(args.model)
    check_patchable(handle)
    clean_text, corrupted_text, clean, corrupted, metric = pair_inputs(args, handle)
    common = (handle, clean, corrupted, metric)
    print(f"clean: {clean_text!r}\ncorrupted: {corrupted_text!r}\n"
          f"metric: {PATCHING_METRICS[args.metric]}, {args.direction}; effect 0 = corrupted run, 1 = clean run")
    if args.analysis == "heads":
        exact = head_patching(*common, args.direction, progress=progress_printer("exact head patching"))
        estimate = attribution_patching(*common, args.direction)
        frame = exact.merge(estimate[["head", "effect"]].rename(columns={"effect": "attribution"}), on="head")
        print(f"Spearman rank correlation attribution vs exact: "
              f"{rank_correlation(frame['attribution'], frame['effect']):.3f}")
    elif args.analysis == "attribution":
        frame = attribution_patching(*common, args.direction)
    elif args.analysis == "positions":
        heads = parse_heads(args.heads, handle.info.n_layers, handle.info.n_heads)
        frame = head_position_patching(*common, heads, args.direction, progress=progress_printer("head × position"))
    else:
        frame = residual_patching(*common, args.direction, progress=progress_printer("residual stream"))
    _print_top(frame, args.top)
    if args.out:
        frame.to_csv(args.out, index=False)
        print(f"wrote {len(frame)} rows to {args.out}")
    return 0


def _print_top(frame: pd.DataFrame, top: int) -> None:
    """The rows whose effect is farthest from the base run's (0 when denoising, 1 when noising: |effect − median|)."""
    shown = frame.reindex((frame["effect"] - frame["effect"].median()).abs().sort_values(ascending=False).index)
    if "clean_token" in shown:
        shown = shown.assign(clean_token=shown["clean_token"].map(display_token),
                             corrupted_token=shown["corrupted_token"].map(display_token))
    print(shown.head(top).to_string(index=False, float_format="{:.4f}".format))
