"""The share store on SQLite and on a real PostgreSQL server: links, notes, migration, concurrency."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from analysis import share_store as share_module
from analysis.share_store import SCHEMA_VERSION, ShareError, ShareStore, migrate_state, notes_by_head
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
    monkeypatch.setattr(share_module, "MIGRATIONS", {0: {"l": "layer", "h": "head"}})
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
