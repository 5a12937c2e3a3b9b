"""The share store on SQLite and on a real PostgreSQL server: links, notes, migration, concurrency."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from analysis import state_version
from analysis.share_store import SCHEMA_VERSION, ShareError, ShareStore, notes_by_head
from analysis.state_version import migrate_state
from tests.postgres_server import postgres_server


@pytest.fixture(scope="module")
def postgres_url():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return ShareStore(f"sqlite:///{tmp_path / 'nested' / 'atlas.sqlite'}")
    url = request.getfixturevalue("postgres_url")
    fresh = ShareStore(url)
    with fresh.engine.begin() as connection:  # each test starts empty
        connection.execute(sa.text("DELETE FROM shared_views"))
        connection.execute(sa.text("DELETE FROM head_notes"))
        connection.execute(sa.text("DELETE FROM head_note_versions"))
    return fresh


def test_a_view_round_trips_with_model_revision(store):
    state = {"model": "smollm2-135m", "text": "When Mary <b>and</b> John", "layer": "14", "head": "3",
             "ablate": "L14H3:zero:0"}
    view_id = store.create_view(state, model_revision="abc123")
    assert len(view_id) == 16
    view = store.load_view(view_id)
    assert view.state == state and view.model == "smollm2-135m" and view.model_revision == "abc123"
    assert store.create_view(state, "abc123") != view_id  # every share gets its own id


def test_the_database_survives_a_restart(store):
    view_id = store.create_view({"model": "minilm-l6"}, "r1")
    store.add_note("minilm-l6", 2, 5, "parks on [CLS]", "ana", "sink")
    reopened = ShareStore(store.url)
    assert reopened.load_view(view_id).state == {"model": "minilm-l6"}
    assert [note.text for note in reopened.notes("minilm-l6")] == ["parks on [CLS]"]
    with reopened.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version FROM atlas_schema")).scalar() == SCHEMA_VERSION


@pytest.mark.parametrize("bad_id", ["", "x", "A" * 15, "A" * 17, "../../etc/passwd", "' OR 1=1 --aaaaa",
                                    "<script>alert(1)</script>", "ÄÖÜäöüßÄÖÜäöüßÄÖ", "0" * 10_000])
def test_unknown_and_malformed_ids_are_not_found(store, bad_id):
    store.create_view({"model": "smollm2-135m"}, "r")
    assert store.load_view(bad_id) is None
    assert store.load_view("AAAAAAAAAAAAAAAA") is None  # well-formed but unknown


def test_notes_are_kept_per_model_and_head(store):
    store.add_note("smollm2-135m", 18, 6, "induction head", "ana", "induction")
    store.add_note("smollm2-135m", 18, 6, "<img src=x onerror=alert(1)>", "")
    store.add_note("minilm-l6", 0, 0, "other model", "bo")
    notes = store.notes("smollm2-135m")
    assert [(n.layer, n.head, n.author) for n in notes] == [(18, 6, "ana"), (18, 6, "anonymous")]
    assert notes[1].text == "<img src=x onerror=alert(1)>"  # stored as typed; the UI escapes it
    assert notes_by_head(notes) == {"L18H6": "ana: induction head; anonymous: <img src=x onerror=alert(1)>"}
    with pytest.raises(ShareError, match="empty"):
        store.add_note("smollm2-135m", 0, 0, "   ", "ana")
    with pytest.raises(ShareError, match="longer"):
        store.add_note("smollm2-135m", 0, 0, "x" * 501, "ana")


def test_concurrent_writers_lose_nothing(store):
    def share(index: int) -> tuple[str, int]:
        view_id = store.create_view({"model": "smollm2-135m", "layer": str(index)}, "r")
        store.add_note("smollm2-135m", index % 30, index % 9, f"note {index}", f"user{index}")
        return view_id, index

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(share, range(200)))
    assert len({view_id for view_id, _ in results}) == 200
    for view_id, index in results:
        assert store.load_view(view_id).state["layer"] == str(index)
    assert sorted(note.text for note in store.notes("smollm2-135m")) == sorted(f"note {i}" for i in range(200))


def test_old_states_are_migrated(monkeypatch):
    monkeypatch.setattr(state_version, "MIGRATIONS", {0: {"l": "layer", "h": "head"}})
    assert migrate_state({"l": "3", "h": "1", "text": "x"}, version=0) == {"layer": "3", "head": "1", "text": "x"}
    assert migrate_state({"l": "3"}, version=1) == {"l": "3"}  # already current: unchanged


def test_cli_reads_links_and_notes(tmp_path, capsys):
    from analysis.cli.main import main as cli_main

    database = tmp_path / "cli.sqlite"
    store = ShareStore(f"sqlite:///{database}")
    view_id = store.create_view({"model": "smollm2-135m", "layer": "3"}, "r1")
    store.add_note("smollm2-135m", 3, 1, 'copies "names"', "ana", "mover")
    assert cli_main(["share", "--db", str(database), view_id]) == 0
    assert '"layer": "3"' in capsys.readouterr().out
    assert cli_main(["notes", "--db", str(database), "--model", "smollm2-135m"]) == 0
    assert 'L3H1,3,1,ana,mover,"copies ""names"""' in capsys.readouterr().out
    assert cli_main(["share", "--db", str(database), "AAAAAAAAAAAAAAAA"]) == 2


def test_a_signed_in_note_is_changed_only_by_its_author_and_keeps_its_history(store):
    note = store.add_note("smollm2-135m", 3, 1, "copies names", "Ana", "mover", author_id="ana@lab.org")
    for change in (lambda: store.edit_note(note.id, "mine now", "", "Bo", "bo@lab.org"),
                   lambda: store.delete_note(note.id, "Bo", "bo@lab.org"),
                   lambda: store.edit_note(note.id, "no sign-in", "", "Bo")):
        with pytest.raises(ShareError, match=r"Only its author \(Ana\) can change this note"):
            change()
    edited = store.edit_note(note.id, "copies the indirect object", "name mover", "Ana", "ana@lab.org")
    assert (edited.text, edited.label, edited.author, edited.revision) == ("copies the indirect object", "name mover",
                                                                          "Ana", 1)
    [first] = store.note_history(note.id)
    assert (first.text, first.label, first.author, first.written_at, first.replaced_by) == (
        "copies names", "mover", "Ana", note.created_at, "Ana")
    store.delete_note(note.id, "Ana", "ana@lab.org")
    assert store.notes("smollm2-135m") == [] and store.note(note.id) is None
    assert [v.text for v in store.note_history(note.id)] == ["copies names", "copies the indirect object"]
    with pytest.raises(ShareError, match="no longer exists"):
        store.edit_note(note.id, "again", "", "Ana", "ana@lab.org")


def test_unauthenticated_notes_can_be_changed_by_anyone_and_nothing_is_lost(store):
    note = store.add_note("smollm2-135m", 0, 0, "sink", "ana")
    assert note.author_id == ""
    store.edit_note(note.id, "first-token sink", "", "bo")
    assert store.note(note.id).author == "bo" and store.note_history(note.id)[0].author == "ana"


def test_simultaneous_edits_of_one_note_lose_no_text(store):
    """Eight editors save at once: each edit either lands (its predecessor goes to the history) or is refused."""
    note = store.add_note("smollm2-135m", 1, 2, "v0", "ana", author_id="ana@lab.org")

    def edit(index: int) -> str | None:
        try:
            return store.edit_note(note.id, f"v{index + 1}", "", "ana", "ana@lab.org").text
        except ShareError as error:
            assert "changed this note meanwhile" in str(error)
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        landed = [text for text in pool.map(edit, range(8)) if text is not None]
    texts = [version.text for version in store.note_history(note.id)] + [store.note(note.id).text]
    assert len(texts) == len(landed) + 1 and texts[0] == "v0" and set(texts[1:]) == set(landed)


def test_a_database_of_an_earlier_version_gets_the_new_columns(tmp_path):
    """Notes and jobs written before ownership and shards existed stay readable; new ones work."""
    from analysis.jobs.records import JobStore

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE head_notes (id INTEGER PRIMARY KEY, model VARCHAR(400) NOT NULL, "
                                   "layer INTEGER NOT NULL, head INTEGER NOT NULL, text VARCHAR(500) NOT NULL, "
                                   "label VARCHAR(40) NOT NULL, author VARCHAR(60) NOT NULL, created_at FLOAT NOT NULL)"))
        connection.execute(sa.text("INSERT INTO head_notes VALUES (1, 'm', 0, 1, 'old note', '', 'ana', 1.0)"))
        connection.execute(sa.text(
            "CREATE TABLE atlas_jobs (id VARCHAR(32) PRIMARY KEY, kind VARCHAR(40) NOT NULL, model VARCHAR(400) NOT "
            "NULL, params_key VARCHAR(64) NOT NULL, params_json TEXT NOT NULL, status VARCHAR(16) NOT NULL, done FLOAT "
            "NOT NULL, total FLOAT NOT NULL, detail VARCHAR(200) NOT NULL, message TEXT NOT NULL, runner VARCHAR(200) "
            "NOT NULL, cancel_requested BOOLEAN NOT NULL, created_at FLOAT NOT NULL, started_at FLOAT, heartbeat_at "
            "FLOAT, finished_at FLOAT, row_errors_json TEXT, result BLOB)"))
    store = ShareStore(url)
    [old] = store.notes("m")
    assert (old.text, old.author_id, old.revision) == ("old note", "", 0)
    store.edit_note(old.id, "new text", "", "bo")
    jobs = JobStore(store)
    job_id = jobs.create("census", "m", {"kind": "census"}, total=1, owner="Bo")
    assert jobs.load(job_id).owner == "Bo" and jobs.create("census", "m", {"kind": "census"}, total=1) is None
