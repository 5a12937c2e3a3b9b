"""Command line: ``python -m analysis <command> ...``. Each command prints or writes plain data."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from analysis.cli.ablation import ablate_command, add_ablate_arguments, add_importance_arguments, importance_command
from analysis.cli.attention_why import add_qk_arguments, add_retrieval_arguments, add_streaming_arguments, \
    qk_command, retrieval_command, streaming_command
from analysis.cli.circuit import add_circuit_arguments, circuit_command
from analysis.cli.census import add_census_arguments, census_command
from analysis.cli.dataset import add_dataset_arguments, dataset_command
from analysis.cli.flow import add_compare_arguments, add_dla_arguments, add_rollout_arguments, compare_command, \
    dla_command, rollout_command
from analysis.cli.jobs import add_jobs_arguments, add_sweep_arguments, jobs_command, sweep_command
from analysis.cli.patch import add_patch_arguments, patch_command
from analysis.runtime.loading import load_model
from analysis.runtime.models import DEFAULT_MODEL, ModelLoadError
from analysis.cli.weights import add_composition_arguments, add_head_arguments, composition_command, head_command
from analysis.cli.share import add_database_argument, add_share_arguments, notes_command, share_command
from analysis.runtime.trace import TextError, run_trace


def _info(args: argparse.Namespace) -> int:
    handle = load_model(args.model)
    print(json.dumps(handle.info.__dict__, indent=2, default=str))
    return 0


def _trace(args: argparse.Namespace) -> int:
    trace = run_trace(load_model(args.model), args.text, max_tokens=args.max_tokens)
    print(f"{trace.n_tokens} tokens{' (truncated)' if trace.truncated else ''}: {trace.tokens}")
    for prediction in trace.top_next:
        print(f"{prediction.probability:8.4f}  {prediction.token!r}")
    return 0


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="embedded model name, local folder or hub id")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m analysis", description="Attention Atlas analyses")
    commands = parser.add_subparsers(dest="command", required=True)
    registry: list[tuple[str, str, Callable, Callable[[argparse.ArgumentParser], None]]] = [
        ("info", "describe a model", _info, lambda p: None),
        ("trace", "tokens and next-token predictions of a text", _trace,
         lambda p: (p.add_argument("text"), p.add_argument("--max-tokens", type=int, default=256))),
        ("census", "score and label every head (induction, previous-token, sink, ...)", census_command,
         add_census_arguments),
        ("head", "one head's profile: census label and scores, OV token pairs, composition partners", head_command,
         add_head_arguments),
        ("composition", "Q/K/V composition scores between heads, from the weights, with a random baseline",
         composition_command, add_composition_arguments),
        ("share", "show the view stored under a short-link id", share_command, add_share_arguments),
        ("notes", "list the team notes on a model's heads (CSV)", notes_command, add_database_argument),
        ("importance", "rank every head by exact ablation and by gradient", importance_command,
         add_importance_arguments),
        ("ablate", "apply head interventions and compare with the clean run", ablate_command, add_ablate_arguments),
        ("rollout", "attention rollout: each input token's share in an output token", rollout_command,
         add_rollout_arguments),
        ("qk", "why a head attends from a query to a key: its logit as query × key component terms", qk_command,
         add_qk_arguments),
        ("retrieval", "retrieval heads: a needle-in-a-haystack probe and each head's copy-paste score",
         retrieval_command, add_retrieval_arguments),
        ("streaming", "streaming heads: the loss change when a head sees only sink + window keys", streaming_command,
         add_streaming_arguments),
        ("dla", "direct logit attribution of every head to a target token", dla_command, add_dla_arguments),
        ("compare", "rank heads by how much their attention differs between two texts or models", compare_command,
         add_compare_arguments),
        ("patch", "activation patching: which heads and positions carry a behaviour (clean vs corrupted prompt)",
         patch_command, add_patch_arguments),
        ("circuit", "edge attribution (EAP, EAP-IG, exact) and a circuit with its faithfulness (clean vs corrupted prompt)",
         circuit_command, add_circuit_arguments),
        ("dataset", "generate a built-in dataset (ioi, repeat, natural) or check a CSV/JSONL file", dataset_command,
         add_dataset_arguments),
        ("sweep", "run census, importance, patching, circuit edge scores or a lab selection's knockout over a "
                  "dataset as a job on Dask", sweep_command, add_sweep_arguments),
        ("jobs", "list, show or cancel jobs", jobs_command, add_jobs_arguments),
    ]
    for name, help_text, handler, add_arguments in registry:
        sub = commands.add_parser(name, help=help_text)
        _add_model_argument(sub)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input prints a message and exits 2 instead of a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ModelLoadError, TextError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
