"""Circuit edge scores over a dataset: N generated IOI pairs scored with EAP as a job on the embedded Dask
cluster, against the same rows in a loop in this process.

Run with ``python -m bench.bench_circuit_sweep`` (``--pairs 20 --method eap --workers N``). The cluster is
started and the model loaded in each worker by a one-pair warm-up job first, timed apart, so the job's time is
what a running app pays per sweep. The in-process loop runs ``compute_rows`` with torch's default threads (or
``--threads``); the job's stored result size per row is printed too (an edge index and a float32 score per edge).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from analysis.datasets.generators import ioi_dataset
from analysis.jobs import cluster
from analysis.jobs.kinds import KINDS, compute_rows
from analysis.jobs.records import JobStore
from analysis.jobs.runner import JobRequest, JobRunner, wait_for
from analysis.methods.aggregate import edge_summary
from analysis.runtime.loading import load_model
from analysis.share_store import ShareStore
from bench.common import machine, table


def _job(runner: JobRunner, request: JobRequest):
    """(seconds from submit to done, the finished record)."""
    start = time.perf_counter()
    record = wait_for(runner.jobs, runner.submit(request), timeout=4 * 3600)
    if record.status != "done":
        raise RuntimeError(f"circuit sweep {record.status}: {record.message}")
    return time.perf_counter() - start, record


def main(argv: list[str] | None = None) -> None:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=20, help="generated IOI pairs")
    parser.add_argument("--method", choices=["eap", "eap-ig"], default="eap")
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG integration steps")
    parser.add_argument("--workers", type=int, default=None, help="embedded cluster workers (default: the app's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the in-process loop "
                                                                   "(default: torch's; a worker has one)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.workers:
        os.environ[cluster.WORKERS_ENV] = str(args.workers)
    load = os.getloadavg()[0]
    handle = load_model(args.model)
    options = {"method": args.method, "steps": args.steps if args.method == "eap-ig" else 1, "metric": "logit_diff"}
    dataset = ioi_dataset(args.pairs, seed=0)
    request = JobRequest("circuit", args.model, handle.info.revision, dataset, options, 256)

    warm_up = ioi_dataset(1, seed=99)
    compute_rows(handle, KINDS["circuit"], list(enumerate(warm_up.rows())), options, 256)  # first-call costs
    start = time.perf_counter()
    local, errors = compute_rows(handle, KINDS["circuit"], list(enumerate(dataset.rows())), options, 256)
    in_process = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        runner = JobRunner(JobStore(ShareStore(f"sqlite:///{Path(folder) / 'atlas.sqlite'}")), cluster.dask_client)
        warm, _ = _job(runner, JobRequest("circuit", args.model, handle.info.revision, warm_up, options, 256))
        seconds, record = _job(runner, request)
        workers = cluster.worker_count(cluster.dask_client())
        cluster.close_clients()
    stored = record.frame()
    rows = len(dataset) - len(record.row_errors)
    largest = np.abs(edge_summary(stored)["mean"].to_numpy() - edge_summary(local)["mean"].to_numpy()).max()
    title = "EAP" if args.method == "eap" else f"EAP-IG ({args.steps} steps)"
    print(f"\n{title} over {args.pairs} IOI pairs, {handle.info.name}, {stored['edge'].nunique():,} edges per pair: "
          f"{machine()}; load average {load:.1f} at the start")
    print(table(["run", "wall s", "s per pair"], [
        ["embedded Dask cluster: start + load the model (one-pair warm-up job)", f"{warm:.1f}", "—"],
        [f"job on the embedded cluster ({workers} worker{'s' if workers > 1 else ''}, one thread each)",
         f"{seconds:.1f}", f"{seconds / args.pairs:.2f}"],
        [f"in-process loop ({torch.get_num_threads()} torch thread{'s' if torch.get_num_threads() > 1 else ''})",
         f"{in_process:.1f}", f"{in_process / args.pairs:.2f}"]]))
    print(f"job / in-process: {seconds / in_process:.2f}×; stored result {len(record.result) / 1e6:.2f} MB, "
          f"{len(record.result) / max(rows, 1) / 1e3:.0f} kB per pair; {len(record.row_errors)} row errors "
          f"(in-process {len(errors)}); largest difference of the mean scores {largest:.1e}")


if __name__ == "__main__":
    main()
