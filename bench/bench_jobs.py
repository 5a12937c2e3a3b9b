"""Dataset sweeps as jobs on Dask: a 100-prompt census and a 100-prompt exact all-heads ablation, 1 vs 2 workers.

Run with ``python -m bench.bench_jobs`` (``--rows 100 --exact-rows 100 --workers 1,2``). Each worker count gets its
own embedded cluster; a small job first starts the workers and loads SmolLM2 in each, so the times below are
the sweeps themselves (what a running app pays per sweep). ``--in-process`` adds the census rows computed in this
process with torch's default threads (no Dask), the reference the job results must equal.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from analysis.datasets import Dataset
from analysis.datasets.generators import ioi_dataset
from analysis.jobs import cluster
from analysis.jobs.kinds import KINDS, compute_rows
from analysis.jobs.records import JobStore
from analysis.jobs.runner import JobRequest, JobRunner, wait_for
from analysis.runtime.loading import load_model
from analysis.share_store import ShareStore
from bench.common import machine, table

MODEL = "smollm2-135m"
OPTIONS = {"census": {}, "exact": {"metric": "logprob", "span": [0, 0], "target": "", "mode": "zero"}}


def _sweep(runner: JobRunner, request: JobRequest) -> tuple[float, int]:
    """Seconds from submit to done, and the stored result's size in bytes."""
    start = time.perf_counter()
    record = wait_for(runner.jobs, runner.submit(request), timeout=4 * 3600)
    if record.status != "done":
        raise RuntimeError(f"{request.kind} sweep {record.status}: {record.message}")
    return time.perf_counter() - start, len(record.result or b"")


def dask_rows(workers: int, requests: dict[str, JobRequest], database: Path) -> list[list[object]]:
    """Each sweep on a fresh embedded cluster of ``workers`` processes (warmed up first)."""
    os.environ[cluster.WORKERS_ENV] = str(workers)
    cluster.close_clients()
    runner = JobRunner(JobStore(ShareStore(f"sqlite:///{database}")), cluster.dask_client)
    revision = next(iter(requests.values())).revision
    warm_start = time.perf_counter()
    warm_rows = tuple(f"Warm-up {i}: the workers load the model." for i in range(workers))
    _sweep(runner, JobRequest("census", MODEL, revision, Dataset("warm-up", warm_rows), {}, 64))
    warm = time.perf_counter() - warm_start
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    rows = [[label, "start the cluster + load the model in each worker", "—", f"{warm:.1f} s", "—", "—"]]
    for kind, request in requests.items():
        seconds, size = _sweep(runner, request)
        rows.append([label, KINDS[kind].title, len(request.dataset),
                     f"{seconds:.1f} s", f"{seconds / len(request.dataset):.2f} s", f"{size / 1e6:.2f} MB"])
    cluster.close_clients()
    return rows


def in_process_rows(requests: dict[str, JobRequest]) -> list[list[object]]:
    """The census rows in this process, no Dask (torch's default threads)."""
    handle = load_model(MODEL)
    rows = []
    for kind, request in list(requests.items())[:1]:
        start = time.perf_counter()
        compute_rows(handle, KINDS[kind], list(enumerate(request.dataset.rows())), request.options, 256)
        seconds = time.perf_counter() - start
        rows.append(["in-process", KINDS[kind].title, len(request.dataset), f"{seconds:.1f} s",
                     f"{seconds / len(request.dataset):.2f} s", "—"])
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the sweep table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100, help="IOI prompts of the census sweep")
    parser.add_argument("--exact-rows", type=int, default=100, help="IOI prompts of the exact-ablation sweep")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--in-process", action="store_true", help="also time the census rows in this process")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    revision = load_model(MODEL).info.revision
    requests = {"census": JobRequest("census", MODEL, revision, ioi_dataset(args.rows, seed=11), {}, 256)}
    if args.exact_rows:
        requests["exact"] = JobRequest("exact", MODEL, revision, ioi_dataset(args.exact_rows, seed=12),
                                       OPTIONS["exact"], 256)
    rows = in_process_rows(requests) if args.in_process else []
    with tempfile.TemporaryDirectory() as folder:
        for workers in [int(w) for w in args.workers.split(",")]:
            rows += dask_rows(workers, requests, Path(folder) / f"jobs-{workers}.sqlite")
    print(f"Machine: {machine()}; load average at the start: {load:.1f}\n")
    print(table(["where", "sweep", "prompts", "time", "per prompt", "stored result"], rows))


if __name__ == "__main__":
    main()
