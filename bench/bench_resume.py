"""A sweep whose server stopped: the time from the restart to the resumed job finishing, against rerunning it.

Run with ``python -m bench.bench_resume`` (``--rows 96 --kill-at 0.5 --workers 1``). Each run is the CLI
``sweep`` command, a process that runs the job on its own embedded Dask cluster like the app does. From
scratch: one sweep, timed from the process start to the written result. Interrupted: the same sweep in a
fresh database, stopped with SIGTERM once ``--kill-at`` of its shards are stored, then the same command
again: it finds the unfinished job, resumes it from the stored shards, and is timed from its start to the
written result. Both times include starting the process and the cluster and loading the model.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analysis.jobs.records import JobStore
from analysis.share_store import ShareStore
from bench.common import machine, table

MODEL = "smollm2-135m"
ROOT = Path(__file__).resolve().parent.parent


def _command(database: Path, rows: int, workers: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "analysis", "sweep", "--model", MODEL, "--dataset", "ioi", "--n", str(rows),
            "--kind", "census", "--max-tokens", "64", "--db", str(database), "--workers", str(workers),
            "--out", str(out)]


def _run(command: list[str]) -> float:
    """Seconds the command takes to finish (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def _stop_midway(command: list[str], database: Path, kill_at: float) -> tuple[int, int]:
    """Start the sweep and stop it with SIGTERM once ``kill_at`` of its shards are stored; (stored, shards)."""
    jobs = JobStore(ShareStore(f"sqlite:///{database}"))  # the tables exist before the sweep's process starts
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
    try:
        while process.poll() is None:
            recent = jobs.recent(1)
            if recent and recent[0].shard_rows:
                shards = -(-int(recent[0].total) // recent[0].shard_rows)
                stored = len(jobs.stored_shards(recent[0].id))
                if stored >= kill_at * shards:
                    return stored, shards
            time.sleep(0.1)
        raise RuntimeError("the sweep finished before it could be stopped; raise --rows")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def main(argv: list[str] | None = None) -> None:
    """Print the restart table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=96, help="IOI prompts of the census sweep")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of the shards stored when it is stopped")
    parser.add_argument("--workers", type=int, default=1, help="embedded cluster: worker processes")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        scratch_db, resume_db = Path(folder) / "scratch.sqlite", Path(folder) / "resume.sqlite"
        scratch = _run(_command(scratch_db, args.rows, args.workers, Path(folder) / "scratch.csv"))
        command = _command(resume_db, args.rows, args.workers, Path(folder) / "resumed.csv")
        stored, shards = _stop_midway(command, resume_db, args.kill_at)
        resumed = _run(command)
        same = (Path(folder) / "scratch.csv").read_text() == (Path(folder) / "resumed.csv").read_text()
    print(f"{machine()}; load average {load:.1f} at the start\n")
    print(table(["run", "shards already stored", "seconds to the result", "vs from scratch"], [
        ["from scratch", f"0 of {shards}", f"{scratch:.1f} s", "1.00"],
        ["restart after SIGTERM, resumed", f"{stored} of {shards}", f"{resumed:.1f} s", f"{resumed / scratch:.2f}"],
    ]))
    print(f"\nresumed result identical to the uninterrupted one: {same}")


if __name__ == "__main__":
    main()
