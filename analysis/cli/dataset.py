"""``python -m analysis dataset``: generate a built-in dataset, or check an uploaded file, and write JSONL."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.datasets import Dataset
from analysis.datasets.generators import GENERATORS, generate_dataset
from analysis.datasets.parsing import dataset_jsonl, parse_dataset
from analysis.runtime.loading import load_model


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the dataset command."""
    parser.add_argument("source", help=f"a generator ({', '.join(GENERATORS)}) or a .csv/.jsonl file to check")
    parser.add_argument("--n", type=int, default=20, help="rows to generate (seeds, for repeat)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (first seed, for repeat)")
    parser.add_argument("--length", type=int, default=25, help="repeat: random tokens per repeat")
    parser.add_argument("--out", default=None, help="write the rows as JSONL here (default: stdout)")


def read_dataset(source: str, n: int = 20, seed: int = 0, length: int = 25, model: str | None = None) -> Dataset:
    """A generated dataset, or the good rows of a file (each bad row is reported on stderr)."""
    if source in GENERATORS:
        tokenizer = load_model(model).tokenizer if source == "repeat" and model else None
        return generate_dataset(source, n, seed, length, tokenizer)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"'{source}' is neither a generator ({', '.join(GENERATORS)}) nor a file.")
    parsed = parse_dataset(path.name, path.read_bytes())
    for problem in parsed.problems:
        print(f"{path.name}: {problem}", file=sys.stderr)
    return parsed.dataset


def dataset_command(args: argparse.Namespace) -> int:
    """Write the dataset as JSONL and say how many rows it has."""
    dataset = read_dataset(args.source, args.n, args.seed, args.length, args.model)
    text = dataset_jsonl(dataset)
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    kind = "patching pairs" if dataset.has_pairs else "texts"
    print(f"{dataset.name}: {len(dataset)} rows ({kind})", file=sys.stderr)
    return 0
