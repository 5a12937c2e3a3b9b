"""Short links and team notes in an embedded database (SQLite by default, PostgreSQL for replicas).

A shared view is the URL state stored under an unguessable id, with the state version
(``analysis.state_version``) and the model's name and revision, so a link stays valid across restarts and
upgrades (old states are migrated on load) and a teammate is warned when the server's model changed.
Notes are short plain-text remarks on one head of one model. A note belongs to its author: with sign-in,
the author's identity (``author_id``) is stored and only that identity may edit or delete it; without
sign-in the author is a typed name and anyone may. Nothing is lost: every edit and deletion first copies
the note's previous text, label, author and time to ``head_note_versions``. The database is chosen by
``ATLAS_DB_URL`` (any SQLAlchemy URL, e.g. ``postgresql+psycopg://...``) or ``ATLAS_DB_PATH`` (a SQLite
file, default ``~/.local/share/attention-atlas/atlas.sqlite``), created on first use; columns added by
later versions are added to an existing database when it is opened (``add_missing_columns``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import sqlalchemy as sa

from analysis.state_version import STATE_VERSION, migrate_state

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16}$")
MAX_NOTE_CHARS = 500
MAX_NAME_CHARS = 60
MAX_LABEL_CHARS = 40
MAX_IDENTITY_CHARS = 320  # an e-mail address or a provider's subject

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
    sa.Column("author_id", sa.String(MAX_IDENTITY_CHARS), nullable=False, server_default=""),
    sa.Column("updated_at", sa.Float),
    sa.Column("deleted_at", sa.Float),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
)
note_versions_table = sa.Table(
    "head_note_versions", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("note_id", sa.Integer, nullable=False, index=True),
    sa.Column("text", sa.String(MAX_NOTE_CHARS), nullable=False),
    sa.Column("label", sa.String(MAX_LABEL_CHARS), nullable=False),
    sa.Column("author", sa.String(MAX_NAME_CHARS), nullable=False),
    sa.Column("author_id", sa.String(MAX_IDENTITY_CHARS), nullable=False),
    sa.Column("written_at", sa.Float, nullable=False),
    sa.Column("replaced_at", sa.Float, nullable=False),
    sa.Column("replaced_by", sa.String(MAX_NAME_CHARS), nullable=False),
)


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
    """A teammate's remark on one head; ``author_id`` is the signed-in identity ("" without sign-in)."""

    id: int
    model: str
    layer: int
    head: int
    text: str
    label: str
    author: str
    author_id: str
    created_at: float
    updated_at: float | None
    revision: int

    @property
    def written_at(self) -> float:
        """When the current text was written."""
        return self.updated_at or self.created_at


@dataclass(frozen=True)
class NoteVersion:
    """An earlier text of a note, who wrote it and when, and who replaced (or deleted) it when."""

    note_id: int
    text: str
    label: str
    author: str
    written_at: float
    replaced_at: float
    replaced_by: str


def may_change(note: HeadNote, editor_id: str) -> bool:
    """Only a note's signed-in author may change it; a note written without sign-in belongs to no one."""
    return not note.author_id or note.author_id == editor_id


def default_database_url() -> str:
    """``ATLAS_DB_URL`` if set, else a SQLite file at ``ATLAS_DB_PATH`` (or the default path)."""
    if os.environ.get("ATLAS_DB_URL"):
        return os.environ["ATLAS_DB_URL"]
    path = Path(os.environ.get("ATLAS_DB_PATH", Path.home() / ".local" / "share" / "attention-atlas" / "atlas.sqlite"))
    return f"sqlite:///{path}"


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
        create_tables(self.engine, _metadata)
        add_missing_columns(self.engine, notes_table)
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

    def add_note(self, model: str, layer: int, head: int, text: str, author: str = "", label: str = "",
                 author_id: str = "") -> HeadNote:
        """Store a note on a head; the text is kept as plain text (whoever shows it must escape it)."""
        text, label = _checked_text(text), label.strip()[:MAX_LABEL_CHARS]
        author = (author.strip() or "anonymous")[:MAX_NAME_CHARS]
        values = {"model": model, "layer": int(layer), "head": int(head), "text": text, "label": label,
                  "author": author, "author_id": author_id[:MAX_IDENTITY_CHARS], "created_at": time.time(),
                  "updated_at": None, "revision": 0}
        with self.engine.begin() as connection:
            note_id = connection.execute(notes_table.insert().values(**values)).inserted_primary_key[0]
        return HeadNote(id=int(note_id), **values)

    def note(self, note_id: int) -> HeadNote | None:
        """The note with this id (None if unknown or deleted)."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(notes_table).where(notes_table.c.id == int(note_id),
                                                                  notes_table.c.deleted_at.is_(None))).mappings().first()
        return None if row is None else _note(row)

    def edit_note(self, note_id: int, text: str, label: str, editor: str, editor_id: str = "") -> HeadNote:
        """Replace a note's text and label, keeping the previous ones in its history; the editor becomes its
        author. Raises ShareError if the note is gone, belongs to someone else, or changed meanwhile."""
        text, label = _checked_text(text), label.strip()[:MAX_LABEL_CHARS]
        editor = (editor.strip() or "anonymous")[:MAX_NAME_CHARS]
        values = {"text": text, "label": label, "author": editor, "updated_at": time.time()}
        before = self._replace(note_id, editor, editor_id, **values)
        return replace(before, revision=before.revision + 1, **values)

    def delete_note(self, note_id: int, editor: str, editor_id: str = "") -> None:
        """Delete a note (its last text stays in its history); same rules as ``edit_note``."""
        self._replace(note_id, editor, editor_id, deleted_at=time.time())

    def _replace(self, note_id: int, editor: str, editor_id: str, **values: Any) -> HeadNote:
        """Copy the note's current text to its history and apply ``values``, in one transaction, only if the note
        is still the revision read here (two editors at once: the second is told, nothing is overwritten).
        Returns the note as it was before this change."""
        current = self.note(note_id)
        if current is None:
            raise ShareError("This note no longer exists (it was deleted).")
        if not may_change(current, editor_id):
            raise ShareError(f"Only its author ({current.author}) can change this note.")
        now = time.time()
        with self.engine.begin() as connection:
            changed = connection.execute(notes_table.update().where(
                notes_table.c.id == current.id, notes_table.c.revision == current.revision,
                notes_table.c.deleted_at.is_(None)).values(revision=current.revision + 1, **values)).rowcount
            if changed != 1:
                raise ShareError("Someone changed this note meanwhile; reload the page and try again.")
            connection.execute(note_versions_table.insert().values(
                note_id=current.id, text=current.text, label=current.label, author=current.author,
                author_id=current.author_id, written_at=current.written_at, replaced_at=now,
                replaced_by=(editor.strip() or "anonymous")[:MAX_NAME_CHARS]))
        return current

    def note_history(self, note_id: int) -> list[NoteVersion]:
        """A note's earlier texts, oldest first (a deleted note's last text is the last entry)."""
        query = (sa.select(note_versions_table).where(note_versions_table.c.note_id == int(note_id))
                 .order_by(note_versions_table.c.id))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [NoteVersion(**{key: row[key] for key in NoteVersion.__dataclass_fields__}) for row in rows]

    def notes(self, model: str) -> list[HeadNote]:
        """All notes on heads of ``model`` that are not deleted, oldest first."""
        query = (sa.select(notes_table).where(notes_table.c.model == model, notes_table.c.deleted_at.is_(None))
                 .order_by(notes_table.c.id))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [_note(row) for row in rows]


def _checked_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise ShareError("The note is empty: write what the head does.")
    if len(text) > MAX_NOTE_CHARS:
        raise ShareError(f"The note is longer than {MAX_NOTE_CHARS} characters; shorten it.")
    return text


def _note(row: Mapping[str, Any]) -> HeadNote:
    return HeadNote(**{key: row[key] for key in HeadNote.__dataclass_fields__})


def create_tables(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Create the tables (and indexes) of ``metadata`` that do not exist yet; a second process doing the same at the
    same moment (replicas starting together) makes the first attempt fail, so it is made once more."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DatabaseError:
        metadata.create_all(engine, checkfirst=True)


def add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Add the columns of ``table`` that an existing database lacks (each is nullable or has a server default),
    so a database written by an earlier version keeps working."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in present]
    with engine.begin() as connection:
        for column in missing:
            kind = column.type.compile(engine.dialect)
            default = f" DEFAULT '{column.server_default.arg}'" if column.server_default is not None else ""
            null = "" if column.nullable else " NOT NULL"
            connection.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}{default}{null}'))


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
