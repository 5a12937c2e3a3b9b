"""Job records in the share database: parameters, status, progress and the finished result.

A record moves queued → running → done | failed | cancelled. Progress and the runner's heartbeat are
updated while it runs; the result (the sweep's long table as Parquet) is written in the same statement
that marks it done, so a record is never half-written. A record whose runner stopped (its process is
gone, or its heartbeat is older than ``STALE_SECONDS``) is marked failed when anyone reads it. The same
parameters give the same ``params_key``, so a finished or running job is reused instead of recomputed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import sqlalchemy as sa

from analysis.share_store import ID_PATTERN, ShareStore, jobs_table

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
STALE_SECONDS = 120.0  # a runner writes a heartbeat at least every 5 s while it follows a job
RESTART_MESSAGE = ("The server running this job stopped before it finished (a restart or a crash); nothing of it "
                   "was kept. Start it again.")
PROCESS_TOKEN = secrets.token_hex(4)


def runner_name() -> str:
    """Who runs jobs from this process: host, process id and a token that is new in every process."""
    return f"{socket.gethostname()}:{os.getpid()}:{PROCESS_TOKEN}"


def params_key(params: Mapping[str, Any]) -> str:
    """A hash of the canonical JSON of a job's parameters (equal parameters, equal key)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def frame_bytes(frame: pd.DataFrame) -> bytes:
    """A result table as compressed Parquet (floats stored as float32)."""
    compact = frame.astype({c: "float32" for c in frame.columns if frame[c].dtype == "float64"})
    buffer = io.BytesIO()
    compact.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def bytes_frame(data: bytes) -> pd.DataFrame:
    """The table stored by ``frame_bytes`` (floats back as float64)."""
    frame = pd.read_parquet(io.BytesIO(data))
    return frame.astype({c: "float64" for c in frame.columns if frame[c].dtype == "float32"})


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: what it computes, how far it got, and (when done) its result."""

    id: str
    kind: str
    model: str
    params: dict[str, Any]
    status: str
    done: float
    total: float
    detail: str
    message: str
    cancel_requested: bool
    created_at: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None
    row_errors: list[dict[str, Any]]
    result: bytes | None

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ACTIVE

    @property
    def fraction(self) -> float:
        """Progress between 0 and 1."""
        return min(1.0, self.done / self.total) if self.total else 0.0

    def seconds_left(self, now: float | None = None, since: tuple[float, float] | None = None) -> float | None:
        """Time left if the rate holds; None until there is a rate. ``since`` = (time, done) of an earlier look at
        the job after its first progress: the rate is measured from there, in the work units ``done`` counts
        (fractions of rows: heads, layers), so the start-up (workers, the model's load) does not count as work."""
        if self.status != "running" or self.started_at is None or self.done <= 0:
            return None
        start, start_done = since if since is not None else (self.started_at, 0.0)
        elapsed, progress = (now or time.time()) - start, self.done - start_done
        if progress <= 0 or elapsed <= 0:
            return None
        return elapsed / progress * max(self.total - self.done, 0.0)

    def frame(self) -> pd.DataFrame:
        """The result table (raises ValueError if the job has none)."""
        if self.result is None:
            raise ValueError(f"Job {self.id} has no result ({self.status}).")
        return bytes_frame(self.result)


def _process_gone(runner: str) -> bool:
    """True if ``runner`` names a process on this host that no longer exists (or an earlier one with our pid)."""
    host, _, rest = runner.partition(":")
    pid, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return token != PROCESS_TOKEN
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class JobStore:
    """Reads and writes job records in a ``ShareStore``'s database (thread-safe, many processes)."""

    def __init__(self, store: ShareStore):
        self.engine = store.engine

    def create(self, kind: str, model: str, params: Mapping[str, Any], total: float) -> str:
        """A new queued job; returns its id."""
        job_id = secrets.token_urlsafe(12)
        with self.engine.begin() as connection:
            connection.execute(jobs_table.insert().values(
                id=job_id, kind=kind, model=model, params_key=params_key(params),
                params_json=json.dumps(params, sort_keys=True, ensure_ascii=False), status="queued", done=0.0,
                total=float(total), detail="", message="", runner=runner_name(), cancel_requested=False,
                created_at=time.time(), heartbeat_at=time.time()))
        return job_id

    def load(self, job_id: str, with_result: bool = True) -> JobRecord | None:
        """The record (orphans marked failed first); None for unknown or malformed ids."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            return None
        self.fail_orphans(job_id)
        columns = [c for c in jobs_table.c if with_result or c.name != "result"]
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(*columns).where(jobs_table.c.id == job_id)).mappings().first()
        return None if row is None else _record(row)

    def find(self, params: Mapping[str, Any]) -> JobRecord | None:
        """The newest job with these parameters that is running, queued or done (None if there is none)."""
        key = params_key(params)
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(jobs_table.c.id).where(jobs_table.c.params_key == key,
                                                 jobs_table.c.status.in_([*ACTIVE, "done"]))
                .order_by(jobs_table.c.created_at.desc())).scalars().all()
        for job_id in found:
            record = self.load(job_id, with_result=False)
            if record is not None and record.status in (*ACTIVE, "done"):
                return self.load(job_id) if record.status == "done" else record
        return None

    def recent(self, limit: int = 10) -> list[JobRecord]:
        """The newest jobs, without their results."""
        columns = [c for c in jobs_table.c if c.name != "result"]
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(*columns).order_by(jobs_table.c.created_at.desc()).limit(limit)
                                      ).mappings().all()
        return [_record(row) for row in rows]

    def _update(self, job_id: str, only_if: tuple[str, ...], **values: Any) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(jobs_table.update().where(jobs_table.c.id == job_id,
                                                                  jobs_table.c.status.in_(only_if)).values(**values))
        return result.rowcount == 1

    def start(self, job_id: str) -> bool:
        """Mark a queued job running (False if it was cancelled or taken meanwhile)."""
        now = time.time()
        return self._update(job_id, ("queued",), status="running", started_at=now, heartbeat_at=now,
                            runner=runner_name())

    def progress(self, job_id: str, done: float, detail: str = "") -> bool:
        """Record progress and the runner's heartbeat; False if the job is no longer running."""
        return self._update(job_id, ("running",), done=float(done), detail=detail[:200], heartbeat_at=time.time())

    def finish(self, job_id: str, result: pd.DataFrame, row_errors: list[dict[str, Any]]) -> bool:
        """Store the result and mark the job done, in one statement."""
        return self._update(job_id, ("running",), status="done", result=frame_bytes(result), finished_at=time.time(),
                            row_errors_json=json.dumps(row_errors), detail="", done=jobs_table.c.total)

    def fail(self, job_id: str, message: str) -> bool:
        """Mark an unfinished job failed with a message saying why."""
        return self._update(job_id, ACTIVE, status="failed", message=message[:2000], finished_at=time.time())

    def cancelled(self, job_id: str) -> bool:
        """Mark an unfinished job cancelled (its runner saw the request and stopped)."""
        return self._update(job_id, ACTIVE, status="cancelled", message="Cancelled.", finished_at=time.time())

    def request_cancel(self, job_id: str) -> bool:
        """Ask the job's runner to stop (from any process); False if the job is not running or queued."""
        return self._update(job_id, ACTIVE, cancel_requested=True)

    def cancel_requested(self, job_id: str) -> bool:
        """True once someone asked to cancel this job."""
        with self.engine.connect() as connection:
            return bool(connection.execute(sa.select(jobs_table.c.cancel_requested)
                                           .where(jobs_table.c.id == job_id)).scalar())

    def fail_orphans(self, job_id: str | None = None) -> int:
        """Mark failed the unfinished jobs (or just ``job_id``) whose runner is gone; returns how many."""
        query = sa.select(jobs_table.c.id, jobs_table.c.runner, jobs_table.c.heartbeat_at).where(
            jobs_table.c.status.in_(ACTIVE))
        if job_id is not None:
            query = query.where(jobs_table.c.id == job_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        stale_before = time.time() - STALE_SECONDS
        orphans = [row.id for row in rows if _process_gone(row.runner) or (row.heartbeat_at or 0) < stale_before]
        return sum(self.fail(orphan, RESTART_MESSAGE) for orphan in orphans)


def _record(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        id=row["id"], kind=row["kind"], model=row["model"], params=json.loads(row["params_json"]),
        status=row["status"], done=row["done"], total=row["total"], detail=row["detail"], message=row["message"],
        cancel_requested=bool(row["cancel_requested"]), created_at=row["created_at"], started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"], finished_at=row["finished_at"],
        row_errors=json.loads(row["row_errors_json"] or "[]"), result=row.get("result"))
