"""``python -m analysis sweep|jobs``: run a dataset sweep as a job on Dask, and list, show or cancel jobs.

A sweep's record goes to the same database as the app's (``--db``, or ATLAS_DB_URL / ATLAS_DB_PATH), so the
app's ``?job=<id>`` link opens a sweep started here. ``--scheduler`` (or ATLAS_DASK_SCHEDULER) runs it on an
existing cluster; otherwise an embedded local cluster of ``--workers`` processes starts for it.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, TextIO
from pathlib import Path

import pandas as pd

from analysis.cli.dataset import read_dataset
from analysis.cli.share import add_database_argument
from analysis.jobs.cluster import SCHEDULER_ENV, WORKERS_ENV, close_clients, dask_client
from analysis.jobs.kinds import KINDS
from analysis.jobs.records import JobRecord, JobStore
from analysis.jobs.runner import JobRequest, JobRunner, wait_for
from analysis.methods.ablation_spec import format_ablation
from analysis.methods.aggregate import head_summary, named_edge_summary, value_summary
from analysis.methods.circuit_graph import graph_of
from analysis.methods.edge_attribution import MAX_STEPS, SCORE_METHODS
from analysis.methods.knockout import knockout_selection
from analysis.methods.metrics import METRICS
from analysis.methods.patching_metric import PATCHING_METRICS
from analysis.runtime.loading import load_model
from analysis.share_store import ShareStore


def _jobs(args: argparse.Namespace) -> JobStore:
    if args.db is None:
        return JobStore(ShareStore())
    return JobStore(ShareStore(args.db if "://" in args.db else f"sqlite:///{args.db}"))


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the sweep command."""
    add_database_argument(parser)
    parser.add_argument("--dataset", required=True, help="a .csv/.jsonl file or a generator (ioi, repeat, natural)")
    parser.add_argument("--n", type=int, default=20, help="rows, for a generator")
    parser.add_argument("--seed", type=int, default=0, help="seed, for a generator")
    parser.add_argument("--kind", choices=list(KINDS), default="census", help="what to compute per row")
    parser.add_argument("--metric", default=None,
                        help=f"importance: {', '.join(METRICS)} (default loss); patching and circuit: "
                             f"{', '.join(PATCHING_METRICS)} (default logit_diff)")
    parser.add_argument("--mode", choices=["zero", "mean"], default="zero", help="importance: ablation mode")
    parser.add_argument("--direction", choices=["denoise", "noise"], default="denoise", help="patching direction")
    parser.add_argument("--method", choices=list(SCORE_METHODS), default="eap",
                        help="circuit: " + "; ".join(f"{name}: {text}" for name, text in SCORE_METHODS.items()))
    parser.add_argument("--steps", type=int, default=5, help=f"circuit: EAP-IG integration steps (1–{MAX_STEPS})")
    parser.add_argument("--selection", default="",
                        help="knockout: the ablation lab's selection (its 'ablate'), e.g. L1H5:zero:0,L3H*:stream:64")
    parser.add_argument("--max-tokens", type=int, default=256, help="token cap per row")
    parser.add_argument("--scheduler", default=None, help=f"Dask scheduler address (default: {SCHEDULER_ENV} or "
                                                          "an embedded local cluster)")
    parser.add_argument("--workers", type=int, default=None, help="embedded cluster: worker processes")
    parser.add_argument("--summary", default=None, help="write the per-head mean and 95%% interval of this value "
                                                        "instead of every row (circuit: score, per edge; knockout: "
                                                        "a value, or all)")
    parser.add_argument("--out", default=None, help="write .csv, .json or .parquet here (default: CSV on stdout)")


def _options(args: argparse.Namespace) -> dict:
    if args.kind == "circuit":
        return {"method": args.method, "steps": args.steps if args.method == "eap-ig" else 1,
                "metric": args.metric or "logit_diff"}
    if args.kind == "patching":
        return {"metric": args.metric or "logit_diff", "direction": args.direction}
    if KINDS[args.kind].uses_metric:
        return {"metric": args.metric or "loss", "span": [0, 0], "target": "", "mode": args.mode}
    return {}


def write_table(frame: pd.DataFrame, out: str | None) -> None:
    """CSV on stdout, or a .csv/.json/.parquet file."""
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    elif out.endswith(".parquet"):
        frame.to_parquet(out, index=False)
    elif out.endswith(".json"):
        frame.to_json(out, orient="records", indent=1)
    else:
        frame.to_csv(out, index=False)


def progress_reporter(stream: TextIO | None = None) -> Callable[[JobRecord], None]:
    """What the sweep prints as it follows a job: one line rewritten in place on a terminal; elsewhere (a log
    file) one line each time rows are completed (a shard finishes) or the status changes."""
    stream = stream or sys.stderr
    terminal, last = stream.isatty(), [None]

    def report(record: JobRecord) -> None:
        detail = f": {record.detail}" if record.detail else ""
        line = f"{record.status}{detail} ({record.fraction:.0%})"
        if terminal:
            print(f"\r{line}   ", end="", file=stream, flush=True)
        elif last[0] != (record.status, int(record.done)):
            last[0] = (record.status, int(record.done))
            print(line, file=stream, flush=True)

    return report


def sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep as a job, following its progress; write its result."""
    if args.scheduler:
        os.environ[SCHEDULER_ENV] = args.scheduler
    if args.workers:
        os.environ[WORKERS_ENV] = str(args.workers)
    values = ("all", *KINDS[args.kind].values)
    if args.summary and KINDS[args.kind].table == "rows" and args.summary not in values:
        raise ValueError(f"--summary: {args.kind} gives {', '.join(values[1:])} (or all), not '{args.summary}'.")
    dataset = read_dataset(args.dataset, args.n, args.seed, model=args.model)
    handle = load_model(args.model)
    options = _options(args)
    if args.kind == "knockout":  # checked here, with the model's shape, rather than failing on every row
        selection = knockout_selection(args.selection, handle.info.n_layers, handle.info.n_heads, dataset.has_pairs)
        options = {"selection": format_ablation(selection)}  # the lab's spelling, so the app reuses this job
    jobs = _jobs(args)
    request = JobRequest(args.kind, args.model, handle.info.revision, dataset, options, args.max_tokens)
    try:
        job_id = JobRunner(jobs, dask_client).submit(request)
        print(f"job {job_id}: {KINDS[args.kind].title} on {dataset.name} ({len(dataset)} rows)", file=sys.stderr)
        record = wait_for(jobs, job_id, timeout=float("inf"), on_progress=progress_reporter())
    finally:
        close_clients()
    print(file=sys.stderr)
    if record.status != "done":
        print(f"error: job {job_id} {record.status}: {record.message}", file=sys.stderr)
        return 1
    for error in record.row_errors:
        print(f"row {error['row']}: {error['message']}", file=sys.stderr)
    rows = record.frame()
    if args.summary and KINDS[args.kind].table == "edges":
        rows = named_edge_summary(graph_of(handle.info, handle.parts.parallel_residual), rows)
    elif args.summary and KINDS[args.kind].table == "rows":
        rows = value_summary(rows, list(KINDS[args.kind].values) if args.summary == "all" else [args.summary])
    elif args.summary:
        rows = head_summary(rows, args.summary)
    write_table(rows, args.out)
    print(f"job {job_id} done; open it in the app with ?job={job_id}", file=sys.stderr)
    return 0


def add_jobs_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the jobs command."""
    add_database_argument(parser)
    parser.add_argument("action", nargs="?", choices=["list", "show", "cancel"], default="list")
    parser.add_argument("id", nargs="?", default=None, help="the job id (show, cancel)")
    parser.add_argument("--out", default=None, help="show: write the job's result table here")


def jobs_command(args: argparse.Namespace) -> int:
    """List the newest jobs, show one (and write its result), or ask a running one to stop."""
    jobs = _jobs(args)
    if args.action == "list":
        for record in jobs.recent(20):
            print(f"{record.id}  {record.status:9s}  {record.fraction:4.0%}  {record.kind:9s}  {record.model}  "
                  f"{record.params['dataset']['name']}")
        return 0
    record = jobs.load(args.id or "", with_result=args.action == "show")
    if record is None:
        print(f"error: no job with id {args.id!r}", file=sys.stderr)
        return 2
    if args.action == "cancel":
        asked = jobs.request_cancel(record.id)
        print(f"job {record.id}: {'cancel requested' if asked else f'already {record.status}'}", file=sys.stderr)
        return 0
    print(f"job {record.id}: {record.kind} on {record.params['dataset']['name']}, {record.model}, {record.status} "
          f"({record.fraction:.0%}) {record.message}".rstrip(), file=sys.stderr)
    if record.status == "done" and args.out:
        write_table(record.frame(), args.out)
        print(f"wrote {Path(args.out).name}", file=sys.stderr)
    return 0
