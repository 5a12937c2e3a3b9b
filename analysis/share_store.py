"""Short links, team notes and job records in an embedded database (SQLite by default, PostgreSQL for replicas).

A shared view is the URL state (``analysis.viewstate``) stored under an unguessable id, with the
state version and the model's name and revision, so a link stays valid across restarts and
upgrades (old states are migrated on load) and a teammate is warned when the server's model
changed. Notes are short plain-text remarks on one head of one model. The database is chosen by
``ATLAS_DB_URL`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://...``) or ``ATLAS_DB_PATH`` (a
SQLite file, default ``~/.local/share/attention-atlas/atlas.sqlite``), created on first use.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa

from analysis.viewstate import STATE_VERSION

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")
MAX_NOTE_CHARS = 500
MAX_NAME_CHARS = 60
MAX_LABEL_CHARS = 40

_metadata = sa.MetaData()
schema_table = sa.Table("atlas_schema", _metadata, sa.Column("version", sa.Integer, nullable=False))
views_table = sa.Table(
    "shared_views", _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("state_version", sa.Integer, nullable=False),
    sa.Column("model", sa.String(400), nullable=False),
    sa.Column("model_revision", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
notes_table = sa.Table(
    "head_notes", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(400), nullable=False, index=True),
    sa.Column("layer", sa.Integer, nullable=False),
    sa.Column("head", sa.Integer, nullable=False),
    sa.Column("text", sa.String(MAX_NOTE_CHARS), nullable=False),
    sa.Column("label", sa.String(MAX_LABEL_CHARS), nullable=False),
    sa.Column("author", sa.String(MAX_NAME_CHARS), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
# Background jobs (dataset sweeps, exact all-heads ablation); records are read and written by analysis.jobs.records.
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
)

# Field renames between state versions: MIGRATIONS[v] turns a version-v state into version v + 1.
# None yet (STATE_VERSION is 1); when a field is renamed, bump STATE_VERSION and add the rename here.
MIGRATIONS: dict[int, dict[str, str]] = {}


class ShareError(ValueError):
    """A share or note request that cannot be served (bad id, empty note, database unreachable)."""


@dataclass(frozen=True)
class SharedView:
    """A stored view: its state (current version) and the model it was made with."""

    id: str
    state: dict[str, str]
    model: str
    model_revision: str
    created_at: float


@dataclass(frozen=True)
class HeadNote:
    """A teammate's remark on one head."""

    model: str
    layer: int
    head: int
    text: str
    label: str
    author: str
    created_at: float


def default_database_url() -> str:
    """``ATLAS_DB_URL`` if set, else a SQLite file at ``ATLAS_DB_PATH`` (or the default path)."""
    if os.environ.get("ATLAS_DB_URL"):
        return os.environ["ATLAS_DB_URL"]
    path = Path(os.environ.get("ATLAS_DB_PATH", Path.home() / ".local" / "share" / "attention-atlas" / "atlas.sqlite"))
    return f"sqlite:///{path}"


def migrate_state(state: Mapping[str, Any], version: int) -> dict[str, Any]:
    """Bring a stored state from ``version`` up to ``STATE_VERSION`` by renaming fields."""
    migrated = dict(state)
    for step in range(version, STATE_VERSION):
        for old, new in MIGRATIONS.get(step, {}).items():
            if old in migrated:
                migrated.setdefault(new, migrated.pop(old))
    return migrated


class ShareStore:
    """Shared views and notes in one database; safe to use from many threads at once."""

    def __init__(self, url: str | None = None):
        self.url = url or default_database_url()
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self.url.startswith("sqlite"):
            database = self.url.split("///", 1)[-1]
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(self.url, **options)
        if self.url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def _create_schema(self) -> None:
        _metadata.create_all(self.engine, checkfirst=True)
        with self.engine.begin() as connection:
            version = connection.execute(sa.select(schema_table.c.version)).scalar()
            if version is None:
                connection.execute(schema_table.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise ShareError(f"The share database has schema {version}, newer than this app ({SCHEMA_VERSION}): "
                                 "upgrade the app.")

    def create_view(self, state: Mapping[str, Any], model_revision: str) -> str:
        """Store the (encoded) state; return its new unguessable id."""
        view_id = secrets.token_urlsafe(12)
        with self.engine.begin() as connection:
            connection.execute(views_table.insert().values(
                id=view_id, state_json=json.dumps(dict(state), sort_keys=True), state_version=STATE_VERSION,
                model=str(state.get("model", "")), model_revision=model_revision, created_at=time.time()))
        return view_id

    def load_view(self, view_id: str) -> SharedView | None:
        """The view stored under ``view_id``, migrated to the current state version; None if unknown."""
        if not isinstance(view_id, str) or not ID_PATTERN.match(view_id):
            return None
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(views_table).where(views_table.c.id == view_id)).mappings().first()
        if row is None:
            return None
        try:
            state = json.loads(row["state_json"])
        except json.JSONDecodeError:
            return None
        if not isinstance(state, dict):
            return None
        state = {str(k): str(v) for k, v in migrate_state(state, row["state_version"]).items()}
        return SharedView(row["id"], state, row["model"], row["model_revision"], row["created_at"])

    def add_note(self, model: str, layer: int, head: int, text: str, author: str = "", label: str = "") -> HeadNote:
        """Store a note on a head; the text is kept as plain text (whoever shows it must escape it)."""
        text, author, label = text.strip(), author.strip() or "anonymous", label.strip()
        if not text:
            raise ShareError("The note is empty: write what the head does.")
        if len(text) > MAX_NOTE_CHARS:
            raise ShareError(f"The note is longer than {MAX_NOTE_CHARS} characters; shorten it.")
        note = HeadNote(model, int(layer), int(head), text, label[:MAX_LABEL_CHARS], author[:MAX_NAME_CHARS],
                        time.time())
        with self.engine.begin() as connection:
            connection.execute(notes_table.insert().values(**note.__dict__))
        return note

    def notes(self, model: str) -> list[HeadNote]:
        """All notes on heads of ``model``, oldest first."""
        query = sa.select(notes_table).where(notes_table.c.model == model).order_by(notes_table.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [HeadNote(**{key: row[key] for key in HeadNote.__dataclass_fields__}) for row in rows]


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers work while one writer commits; busy_timeout makes writers wait, not fail."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def notes_by_head(notes: list[HeadNote]) -> dict[str, str]:
    """Notes joined per head label ('L3H2' → 'ana: copies names; bo: …'), for tables and hover text."""
    joined: dict[str, list[str]] = {}
    for note in notes:
        joined.setdefault(f"L{note.layer}H{note.head}", []).append(f"{note.author}: {note.text}")
    return {head: "; ".join(texts) for head, texts in joined.items()}
