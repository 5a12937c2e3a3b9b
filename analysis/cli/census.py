"""``python -m analysis census``: score and label every head, write CSV or JSON."""
from __future__ import annotations

import argparse
import sys

from analysis.methods.census import PROBE_LENGTH, census_summary, head_census
from analysis.runtime.loading import load_model


def add_census_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the census command."""
    parser.add_argument("--probe", choices=["induction"], default="induction",
                        help="standard probe: random tokens written twice (Olsson et al. 2022)")
    parser.add_argument("--text", default=None, help="also score this text (default: the probe only)")
    parser.add_argument("--probe-length", type=int, default=PROBE_LENGTH, help="random tokens per repeat")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's random tokens")
    parser.add_argument("--out", default=None, help="write .csv or .json here (default: CSV on stdout)")


def census_command(args: argparse.Namespace) -> int:
    """Run the census and write it; print the one-paragraph summary to stderr."""
    handle = load_model(args.model)
    census = head_census(handle, args.text, probe_length=args.probe_length, seed=args.seed)
    if args.out is None:
        census.to_csv(sys.stdout, index=False)
    elif args.out.endswith(".json"):
        census.to_json(args.out, orient="records", indent=1)
    else:
        census.to_csv(args.out, index=False)
    print(census_summary(census, handle.info.name), file=sys.stderr)
    return 0
