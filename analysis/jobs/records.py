"""Job records in the share database: parameters, status, progress, finished shards and the result.

A record moves queued → running → done | failed | cancelled. Progress and the runner's heartbeat are
updated while it runs; each shard's result is written to ``atlas_job_shards`` as soon as it finishes, and
the joined result is written in the same transaction that marks the job done (and drops its shards), so a
record is never half-written. A running record whose runner stopped (its process is gone, or its heartbeat
is older than ``STALE_SECONDS``) is an orphan: a runner ``claim``s it and goes on from the shards not yet
stored. The same parameters give the same ``params_key``, and at most one queued, running or done job has
a key (a unique index): two people submitting the same job at once get one job.
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

from analysis.share_store import ID_PATTERN, ShareStore, add_missing_columns, create_tables

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
LIVE = (*ACTIVE, "done")  # statuses a job with the same parameters is reused from
STALE_SECONDS = 120.0  # a runner writes a heartbeat at least every 5 s while it follows a job
PROCESS_TOKEN = secrets.token_hex(4)

_metadata = sa.MetaData()
jobs_table = sa.Table(
    "atlas_jobs", _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("model", sa.String(400), nullable=False),
    sa.Column("params_key", sa.String(64), nullable=False, index=True),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("done", sa.Float, nullable=False),
    sa.Column("total", sa.Float, nullable=False),
    sa.Column("detail", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("runner", sa.String(200), nullable=False),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("row_errors_json", sa.Text),
    sa.Column("result", sa.LargeBinary),
    sa.Column("owner", sa.String(60), nullable=False, server_default=""),
    sa.Column("shard_rows", sa.Integer),  # rows per shard, fixed when the job starts (a resumed job keeps it)
)
_live = jobs_table.c.status.in_(LIVE)
sa.Index("atlas_jobs_one_live_job_per_params", jobs_table.c.params_key, unique=True,
         sqlite_where=_live, postgresql_where=_live)
shards_table = sa.Table(
    "atlas_job_shards", _metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("result", sa.LargeBinary, nullable=False),
    sa.Column("row_errors_json", sa.Text, nullable=False),
    sa.Column("runner", sa.String(200), nullable=False),
    sa.Column("finished_at", sa.Float, nullable=False),
)


def runner_name() -> str:
    """Who runs jobs from this process: host, process id and a token that is new in every process."""
    return f"{socket.gethostname()}:{os.getpid()}:{PROCESS_TOKEN}"


def params_key(params: Mapping[str, Any]) -> str:
    """A hash of the canonical JSON of a job's parameters (equal parameters, equal key)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def frame_bytes(frame: pd.DataFrame) -> bytes:
    """A result table as compressed Parquet: floats stored as float32 split into byte streams, integers
    delta-encoded (an edge table's running edge index costs almost nothing), other columns dictionary-encoded."""
    compact = frame.astype({c: "float32" for c in frame.columns if frame[c].dtype == "float64"})
    encodings = {c: "BYTE_STREAM_SPLIT" if pd.api.types.is_float_dtype(compact[c]) else "DELTA_BINARY_PACKED"
                 for c in compact.columns if pd.api.types.is_float_dtype(compact[c])
                 or pd.api.types.is_integer_dtype(compact[c])}
    buffer = io.BytesIO()
    compact.to_parquet(buffer, index=False, compression="zstd", column_encoding=encodings,
                       use_dictionary=[c for c in compact.columns if c not in encodings])
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
    owner: str = ""
    shard_rows: int | None = None
    runner: str = ""

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in ACTIVE

    @property
    def orphaned(self) -> bool:
        """Unfinished, and its runner is gone (its process ended, or it has been silent too long)."""
        stale = (self.heartbeat_at or 0) < time.time() - STALE_SECONDS
        return self.active and (_process_gone(self.runner) or stale)

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
        create_tables(self.engine, _metadata)
        add_missing_columns(self.engine, jobs_table)
        for index in jobs_table.indexes:
            index.create(self.engine, checkfirst=True)

    def create(self, kind: str, model: str, params: Mapping[str, Any], total: float, owner: str = "") -> str | None:
        """A new queued job; returns its id, or None if a live job with these parameters exists (maybe just
        created by someone else)."""
        job_id, now = secrets.token_urlsafe(12), time.time()
        try:
            with self.engine.begin() as connection:
                connection.execute(jobs_table.insert().values(
                    id=job_id, kind=kind, model=model, params_key=params_key(params),
                    params_json=json.dumps(params, sort_keys=True, ensure_ascii=False), status="queued", done=0.0,
                    total=float(total), detail="", message="", runner=runner_name(), cancel_requested=False,
                    created_at=now, heartbeat_at=now, owner=owner[:60]))
        except sa.exc.IntegrityError:
            return None
        return job_id

    def load(self, job_id: str, with_result: bool = True) -> JobRecord | None:
        """The record; None for unknown or malformed ids."""
        if not isinstance(job_id, str) or not ID_PATTERN.match(job_id):
            return None
        columns = [c for c in jobs_table.c if with_result or c.name != "result"]
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(*columns).where(jobs_table.c.id == job_id)).mappings().first()
        return None if row is None else _record(row)

    def find(self, params: Mapping[str, Any]) -> JobRecord | None:
        """The job with these parameters that is running, queued or done (None if there is none)."""
        with self.engine.connect() as connection:
            job_id = connection.execute(sa.select(jobs_table.c.id).where(
                jobs_table.c.params_key == params_key(params), _live)).scalar()
        record = None if job_id is None else self.load(job_id, with_result=False)
        if record is None or record.status not in LIVE:
            return None
        return self.load(job_id) if record.status == "done" else record

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

    def start(self, job_id: str, shard_rows: int) -> bool:
        """Mark a queued job running with this shard size (False if it was cancelled or taken meanwhile)."""
        now = time.time()
        return self._update(job_id, ("queued",), status="running", started_at=now, heartbeat_at=now,
                            runner=runner_name(), shard_rows=int(shard_rows))

    def claim(self, job_id: str, previous_runner: str) -> bool:
        """Become the runner of an orphaned job; only one claimant wins (the runner must still be the one read)."""
        with self.engine.begin() as connection:
            result = connection.execute(jobs_table.update().where(
                jobs_table.c.id == job_id, jobs_table.c.status.in_(ACTIVE), jobs_table.c.runner == previous_runner
            ).values(runner=runner_name(), heartbeat_at=time.time()))
        return result.rowcount == 1

    def orphans(self) -> list[JobRecord]:
        """Unfinished jobs whose runner is gone."""
        columns = [c for c in jobs_table.c if c.name != "result"]
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(*columns).where(jobs_table.c.status.in_(ACTIVE))).mappings().all()
        return [record for record in map(_record, rows) if record.orphaned]

    def progress(self, job_id: str, done: float, detail: str = "") -> bool:
        """Record progress and the runner's heartbeat; False if the job is no longer running."""
        return self._update(job_id, ("running",), done=float(done), detail=detail[:200], heartbeat_at=time.time())

    def save_shard(self, job_id: str, shard: int, result: pd.DataFrame, row_errors: list[dict[str, Any]]) -> bool:
        """Store a finished shard's rows (once: False if this shard was stored already)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(shards_table.insert().values(
                    job_id=job_id, shard=int(shard), result=frame_bytes(result),
                    row_errors_json=json.dumps(row_errors), runner=runner_name(), finished_at=time.time()))
        except sa.exc.IntegrityError:
            return False
        return True

    def shards(self, job_id: str) -> dict[int, tuple[pd.DataFrame, list[dict[str, Any]]]]:
        """The stored shards of a job: shard index → (rows, row errors)."""
        query = sa.select(shards_table.c.shard, shards_table.c.result, shards_table.c.row_errors_json).where(
            shards_table.c.job_id == job_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return {row.shard: (bytes_frame(row.result), json.loads(row.row_errors_json)) for row in rows}

    def stored_shards(self, job_id: str) -> dict[int, str]:
        """Which shards of a job are stored, and which runner computed each."""
        query = sa.select(shards_table.c.shard, shards_table.c.runner).where(shards_table.c.job_id == job_id)
        with self.engine.connect() as connection:
            return {row.shard: row.runner for row in connection.execute(query)}

    def finish(self, job_id: str, result: pd.DataFrame, row_errors: list[dict[str, Any]]) -> bool:
        """Store the result and mark the job done, dropping its shards, in one transaction."""
        with self.engine.begin() as connection:
            done = connection.execute(jobs_table.update().where(
                jobs_table.c.id == job_id, jobs_table.c.status == "running").values(
                status="done", result=frame_bytes(result), finished_at=time.time(),
                row_errors_json=json.dumps(row_errors), detail="", done=jobs_table.c.total)).rowcount == 1
            if done:
                connection.execute(shards_table.delete().where(shards_table.c.job_id == job_id))
        return done

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


def _record(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        id=row["id"], kind=row["kind"], model=row["model"], params=json.loads(row["params_json"]),
        status=row["status"], done=row["done"], total=row["total"], detail=row["detail"], message=row["message"],
        cancel_requested=bool(row["cancel_requested"]), created_at=row["created_at"], started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"], finished_at=row["finished_at"],
        row_errors=json.loads(row["row_errors_json"] or "[]"), result=row.get("result"), owner=row["owner"],
        shard_rows=row["shard_rows"], runner=row["runner"])
