"""Sharing in the app: short links restore views, long texts, notes, and 200+ malformed links."""
from __future__ import annotations

import json
import random
import string

import pytest

from analysis.share_store import ShareStore
from analysis.viewstate import FIELDS, MAX_URL_TEXT_CHARS, parse_state
from tests.browser_support import running_app, selected_option, wait_for_app
from tests.app_support import messages, run_app

HEAD_VIEW = "pages/head_view.py"


@pytest.fixture(autouse=True)
def own_database(tmp_path, monkeypatch):
    """Each test gets an empty share database (the app reads ATLAS_DB_PATH when it first opens it)."""
    from components.share_links import share_store

    monkeypatch.setenv("ATLAS_DB_PATH", str(tmp_path / "atlas.sqlite"))
    share_store.clear()
    yield
    share_store.clear()


def short_id(app) -> str:
    return app.sidebar.code[0].value.split("?s=")[1]


def test_share_button_makes_a_link_that_restores_the_view(smollm2):
    app = run_app(HEAD_VIEW, layer="14", head="3", hide_first="1", text="Alice met Bob. Alice thanked")
    app.sidebar.button(key="share_button").click().run()
    assert not app.exception
    assert app.sidebar.code[1].value.endswith("?text=Alice+met+Bob.+Alice+thanked&layer=14&head=3&hide_first=1")
    opened = run_app(HEAD_VIEW, s=short_id(app))
    assert not opened.exception and not messages(opened)
    assert [s.value for s in opened.selectbox if s.label in ("Layer", "Head")] == [14, 3]
    assert opened.toggle(key="w_hide_first").value
    assert opened.sidebar.text_area(key="w_text").value == "Alice met Bob. Alice thanked"
    assert opened.query_params["layer"] == "14"  # the link is expanded into the full URL state


def test_long_texts_travel_as_short_links(smollm2):
    long_text = "The quick brown fox jumps over the lazy dog. " * 60
    assert len(long_text) > MAX_URL_TEXT_CHARS
    app = run_app(HEAD_VIEW)
    app.sidebar.text_area(key="w_text").input(long_text).run()
    assert not app.exception
    assert set(app.query_params) == {"s"}
    reopened = run_app(HEAD_VIEW, s=app.query_params["s"])
    assert reopened.sidebar.text_area(key="w_text").value == long_text


def test_a_long_second_text_travels_as_a_short_link_too(smollm2):
    second = "A slow green turtle walks under the busy bridge. " * 40
    assert len(second) > MAX_URL_TEXT_CHARS
    app = run_app("pages/compare.py")
    app.text_area(key="w_compare_text").input(second).run()
    assert not app.exception and set(app.query_params) == {"s"}
    reopened = run_app("pages/compare.py", s=app.query_params["s"])
    assert not reopened.exception and reopened.text_area(key="w_compare_text").value == second


def test_a_changed_model_revision_is_announced(smollm2):
    view_id = ShareStore().create_view({"model": "smollm2-135m", "layer": "2"}, model_revision="0ld0ld0ld0ld")
    app = run_app(HEAD_VIEW, s=view_id)
    assert "revision 0ld0ld0ld0ld" in messages(app)


@pytest.mark.parametrize("bad", ["nope", "AAAAAAAAAAAAAAAA", "../../../etc/passwd", "<script>x</script>", ""])
def test_unknown_short_links_give_the_default_view(smollm2, bad):
    app = run_app(HEAD_VIEW, s=bad)
    assert not app.exception
    assert "short link does not exist" in messages(app)
    assert [s.value for s in app.selectbox if s.label in ("Layer", "Head")] == [0, 0]


def test_notes_are_saved_listed_escaped_and_marked(smollm2):
    app = run_app(HEAD_VIEW, layer="18", head="6")
    app.text_input(key="note_author").input("ana")
    app.text_input(key="note_label").input("induction")
    app.text_area(key="note_text").input("<img src=x onerror=alert(1)> copies the token after")
    app.button[0].click().run()
    assert not app.exception
    listed = " ".join(m.value for m in app.markdown)
    assert "&lt;img src=x onerror=alert(1)&gt; copies the token after" in listed and "<img" not in listed
    overview = run_app()
    marks = json.loads(overview.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    assert [(round(m["y"]), round(m["x"]), m["text"]) for m in marks] == [(18, 6, "✎")]
    census = run_app("pages/census.py")
    assert "ana: <img src=x onerror=alert(1)> copies" in census.dataframe[0].value.set_index("head").loc["L18H6", "notes"]


def malformed_links(count: int, seed: int = 7) -> list[dict[str, str]]:
    """Random, huge, wrongly typed and hostile values for every field, plus bad short-link ids."""
    rng = random.Random(seed)
    hostile = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "../../../../etc/passwd",
               "/root/.ssh", "org/model?trust_remote_code=1", "nan", "inf", "-1e309", "1e999", "0x1f", "",
               " ", "\x00", "💥" * 50, "9" * 500, "true; DROP TABLE shared_views;", "%00", "[]", "{}"]
    links = []
    names = list(FIELDS) + ["s", "unknown"]
    for _ in range(count):
        link = {}
        for name in rng.sample(names, rng.randint(1, 5)):
            kind = rng.random()
            if kind < 0.4:
                link[name] = rng.choice(hostile)
            elif kind < 0.7:
                link[name] = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40)))
            elif kind < 0.85:
                link[name] = str(rng.randint(-10**12, 10**12))
            else:
                link[name] = "x" * rng.choice([2_000, 30_000])
        links.append(link)
    return links


def test_two_hundred_malformed_links_parse_without_exceptions():
    for link in malformed_links(300):
        state, warnings = parse_state(link)
        assert set(state) == set(FIELDS)
        for name, spec in FIELDS.items():
            if spec.kind == "str" and spec.choices:
                assert state[name] in spec.choices
            if spec.kind in ("int", "float") and spec.minimum is not None:
                assert spec.minimum <= state[name] <= spec.maximum


@pytest.mark.parametrize("link", malformed_links(12, seed=11))
def test_malformed_links_render_pages_without_exceptions_or_markup(smollm2, link):
    for page in (HEAD_VIEW, "pages/census.py"):
        app = run_app(page, **link)
        assert not app.exception
        rendered = " ".join(m.value for m in app.markdown)
        assert "<script" not in rendered and "onerror=" not in rendered.replace("onerror=alert", "")


@pytest.mark.browser
def test_short_link_round_trip_in_two_browser_contexts(browser, artifacts_dir, tmp_path):
    with running_app({"ATLAS_DB_PATH": str(tmp_path / "browser.sqlite")}) as url:
        first = browser.new_context().new_page()
        first.set_viewport_size({"width": 1400, "height": 1000})
        first.goto(url + "/head_view?layer=17&head=4&log_color=1&text=Alice+met+Bob+and+Alice+thanked")
        first.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=120_000)
        wait_for_app(first)
        first.get_by_role("button", name="Share this view").click()
        first.locator('[data-testid="stSidebar"] [data-testid="stCode"]').first.wait_for()
        link = first.locator('[data-testid="stSidebar"] [data-testid="stCode"]').first.inner_text().strip()
        assert "?s=" in link and link.startswith(url + "/head_view")
        first.screenshot(path=str(artifacts_dir / "share-made.png"), full_page=True)

        second = browser.new_context().new_page()
        second.set_viewport_size({"width": 1400, "height": 1000})
        second.goto(link)
        second.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=120_000)
        wait_for_app(second)
        assert selected_option(second, "Layer") == "L17" and selected_option(second, "Head") == "H4"
        assert second.get_by_role("textbox", name="Text").input_value() == "Alice met Bob and Alice thanked"
        assert second.get_by_role("switch", name="Log colour").is_checked()
        assert "L17H4" in second.locator(".js-plotly-plot").first.inner_text()
        assert "layer=17" in second.url
        second.screenshot(path=str(artifacts_dir / "share-opened.png"), full_page=True)
