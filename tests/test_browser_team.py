"""A team server with sign-in, for real: an OpenID Connect provider for tests on 127.0.0.1, the app configured
against it through a secrets file, and Chromium signing in.

One app serves both scenarios (a tiny random model, one Dask worker): Ana signs in, writes a note and signs out;
Bo signs in and is refused editing it; a stranger's domain is refused; a shared link opens read-only. Then eight
users in eight browser sessions at once each write a note and start a job: every note and job is kept with its
author, and no one can edit another's note.
"""
from __future__ import annotations

import threading

import oidc_provider_mock
import pytest
import werkzeug.serving

from analysis.jobs.records import JobStore
from analysis.jobs.runner import wait_for
from analysis.share_store import ShareStore
from tests.browser_support import running_app, wait_for_app
from tests.jobs_support import tiny_causal_folder

pytestmark = pytest.mark.browser

TEAM = [f"user{index}" for index in range(8)]
USERS = ["ana", "bo", *TEAM]
TIMEOUT_MS = 240_000  # a bound for a busy machine, not a timing claim


@pytest.fixture(scope="module")
def provider():
    """A real OpenID Connect provider on 127.0.0.1 that signs in the users above (ana@lab.org, …) and eve@other.org."""
    claims = [oidc_provider_mock.User(sub=name, claims={"email": f"{name}@lab.org", "name": name.title()})
              for name in USERS]
    claims.append(oidc_provider_mock.User(sub="eve", claims={"email": "eve@other.org", "name": "Eve"}))
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(user_claims=claims), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def team_app(provider, tmp_path_factory):
    """The app with sign-in configured (lab.org only, shared links read-only); yields (base URL, database URL)."""
    folder = tmp_path_factory.mktemp("team")
    secrets = folder / "secrets.toml"
    secrets.write_text(f'''[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "a-test-cookie-secret-of-enough-length"
client_id = "attention-atlas"
client_secret = "test-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"

[atlas]
allowed = ["lab.org"]
shared_links = "read-only"
''')
    model = tiny_causal_folder(folder / "tiny-ioi-llama")
    database = f"sqlite:///{folder / 'atlas.sqlite'}"
    env = {"ATLAS_DB_URL": database, "ATLAS_ALLOWED_MODELS": model, "ATLAS_DEFAULT_MODEL": model,
           "ATLAS_DASK_WORKERS": "1"}
    with running_app(env, extra_args=("--secrets.files", str(secrets))) as url:
        yield url, database


def new_page(browser):
    """A page of its own browser context whose every wait, navigation included, has the busy-machine bound."""
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.set_default_navigation_timeout(TIMEOUT_MS)
    return page


def sign_in(page, base: str, user: str) -> None:
    """Sign in through the provider's page as ``user`` (the app asks first)."""
    page.goto(base + "/")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name=user, exact=True).first.click()
    page.wait_for_url(f"{base}/**", timeout=TIMEOUT_MS)


def open_head(page, base: str, query: str = "layer=1&head=2") -> None:
    page.goto(f"{base}/head_view?{query}")
    page.get_by_role("heading", name="Notes on L1H2").wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page)


def add_note(page, text: str) -> None:
    page.get_by_role("textbox", name="Note", exact=True).fill(text)
    page.get_by_role("button", name="Add note").click()


def test_sign_in_notes_of_their_own_and_read_only_links(team_app, browser, artifacts_dir):
    base, database = team_app
    page = new_page(browser)
    page.goto(base + "/head_view")
    page.get_by_text("This team server asks you to sign in first.").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_role("heading", name="Notes on L1H2").count() == 0

    sign_in(page, base, "ana")
    open_head(page, base)
    assert page.get_by_text("Signed in as Ana").is_visible()
    add_note(page, "copies the indirect object")
    page.get_by_text("copies the indirect object").first.wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("Edit or delete", exact=True).count() == 1
    page.screenshot(path=str(artifacts_dir / "team-ana-note.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click()  # the provider's sign-out page
    page.get_by_text("This team server asks you to sign in first.").wait_for(timeout=TIMEOUT_MS)

    sign_in(page, base, "bo")
    open_head(page, base)
    page.get_by_text("copies the indirect object").first.wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("Only its author (Ana) can edit or delete this note.").is_visible()
    assert page.get_by_text("Edit or delete", exact=True).count() == 0
    page.screenshot(path=str(artifacts_dir / "team-bo-refused.png"), full_page=True)
    [note] = ShareStore(database).notes(_model(database))
    assert (note.author, note.author_id) == ("Ana", "ana@lab.org")

    stranger = new_page(browser)
    sign_in(stranger, base, "eve")
    stranger.get_by_text("is not on this server's allow-list").wait_for(timeout=TIMEOUT_MS)

    reader = new_page(browser)  # not signed in, through a shared link
    open_head(reader, base, f"layer=1&head=2&job={'A' * 16}")
    assert reader.get_by_text("copies the indirect object").is_visible()
    assert reader.get_by_text("Sign in to write notes.").is_visible()
    assert reader.get_by_role("button", name="Add note").count() == 0


def _model(database: str) -> str:
    """The one model notes were written on (the tiny folder)."""
    with ShareStore(database).engine.connect() as connection:
        return connection.exec_driver_sql("SELECT DISTINCT model FROM head_notes").scalar()


def test_eight_signed_in_sessions_at_once_keep_every_note_and_job(team_app, browser, artifacts_dir):
    base, database = team_app
    pages = []
    for user in TEAM:
        page = new_page(browser)
        sign_in(page, base, user)
        pages.append(page)
    for page in pages:
        open_head(page, base)
    for user, page in zip(TEAM, pages):  # all eight submit before any is waited for
        add_note(page, f"note by {user}")
    for user, page in zip(TEAM, pages):
        page.get_by_text(f"note by {user}").first.wait_for(timeout=TIMEOUT_MS)
    for index, page in enumerate(pages):
        page.goto(f"{base}/datasets?ds_source=ioi&ds_n={index + 2}")
    for index, page in enumerate(pages):
        page.get_by_role("button", name=f"Start the sweep over {index + 2} rows").click(timeout=TIMEOUT_MS)
    for page in pages:
        page.wait_for_url("**job=*", timeout=TIMEOUT_MS)

    store = ShareStore(database)
    notes = [note for note in store.notes(_model(database)) if note.text.startswith("note by")]
    assert sorted((note.text, note.author_id) for note in notes) == sorted(
        (f"note by {user}", f"{user}@lab.org") for user in TEAM)
    jobs = JobStore(store)
    started = {record.owner: record for record in jobs.recent(20) if record.owner in {u.title() for u in TEAM}}
    assert sorted(started) == sorted(user.title() for user in TEAM)
    assert sorted(int(record.total) for record in started.values()) == list(range(2, 10))

    others = len(store.notes(_model(database))) - 1
    for page in (pages[0], pages[-1]):  # the first and the last see every note and may change only their own
        open_head(page, base)
        assert page.get_by_text("Edit or delete", exact=True).count() == 1
        assert page.get_by_text("can edit or delete this note.").count() == others
    pages[0].screenshot(path=str(artifacts_dir / "team-eight-sessions.png"), full_page=True)
    for record in started.values():
        assert wait_for(jobs, record.id, 300).status == "done"
