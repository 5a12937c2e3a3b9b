"""The overview, head and token pages in real Streamlit (AppTest), including bad links."""
from __future__ import annotations

import pytest

from components.panels.sidebar import OTHER
from tests.app_support import chart, messages, plotly_values, run_app

def test_overview_shows_model_summary_and_prediction(smollm2):
    app = run_app()
    assert not app.exception
    assert app.title[0].value == "Model overview"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Layers"] == "30" and metrics["KV heads"] == "3"
    assert "␣Mary" in app.dataframe[0].value["next token"].tolist()


def test_head_view_restores_layer_and_head_from_the_link(smollm2):
    app = run_app("pages/head_view.py", layer="5", head="7")
    assert not app.exception
    assert [s.value for s in app.selectbox if s.label in ("Layer", "Head")] == [5, 7]
    assert app.query_params["layer"] == "5" and app.query_params["head"] == "7"


def test_token_view_on_the_encoder(minilm):
    app = run_app("pages/token_view.py", model="minilm-l6", text="The cat sat on the mat.", token="2",
                  token_direction="to", token_per_head="1")
    assert not app.exception
    assert app.selectbox(key="w_token").value == 2
    assert app.radio(key="w_token_direction").value == "to" and app.toggle(key="w_token_per_head").value
    app.radio(key="w_token_direction").set_value("from").run()
    assert "token_direction" not in app.query_params  # back at the default, so it leaves the link


@pytest.mark.parametrize("params, expected", [
    ({"layer": "99"}, "Layer 99 does not exist"),
    ({"head": "-3"}, "Ignored the link's 'head'"),
    ({"token": "500"}, "past the end of the text"),
    ({"layer": "abc"}, "not a whole number"),
    ({"model": "evil/model"}, "not configured to serve"),
    ({"model": "../../etc"}, "not configured to serve"),
    ({"text": " "}, "The text is empty"),
])
def test_bad_links_get_a_clear_message(smollm2, params, expected):
    app = run_app("pages/head_view.py", **params)
    assert not app.exception
    assert expected in messages(app)


def test_text_over_the_cap_is_truncated_with_a_warning(smollm2):
    app = run_app(text="word " * 100, max_tokens="32")
    assert not app.exception
    assert "only the first 32 are analysed" in messages(app)


def test_changing_the_head_updates_the_url(smollm2):
    app = run_app("pages/head_view.py")
    app.selectbox(key="w_head").set_value(4).run()
    assert not app.exception
    assert app.query_params["head"] == "4"


def test_a_job_and_a_sweep_row_stay_on_the_page_that_set_them(smollm2, job_database):
    app = run_app("pages/datasets.py", job="0123456789abcdef", sweep_row="2", layer="3")
    assert app.query_params["job"] == "0123456789abcdef" and app.query_params["sweep_row"] == "2"
    app.switch_page("pages/head_view.py").run()
    assert not app.exception
    assert "job" not in app.query_params and "sweep_row" not in app.query_params
    assert app.query_params["layer"] == "3"  # the fields every page shares come along


def test_a_typed_hub_id_on_an_offline_server_says_what_to_do(smollm2):
    app = run_app("pages/overview.py")
    app.selectbox(key="w_model_choice").set_value(OTHER).run()
    app.text_input(key="w_model_typed").input("attention-atlas-tests/not-a-cached-model").run()
    assert not app.exception
    assert "set to work offline" in messages(app) and "Name a local model folder" in messages(app)


def test_who_looks_at_a_token_starts_on_a_token_that_later_tokens_look_at(smollm2):
    app = run_app("pages/token_view.py", token_direction="to")
    assert not app.exception
    n_tokens = len(app.selectbox(key="w_token").options)
    assert app.selectbox(key="w_token").value == n_tokens // 2
    looked_at = plotly_values(chart(app, 0)["data"][0]["z"])  # [layers, query tokens]
    assert (looked_at.max(axis=0) > 0).sum() == n_tokens - n_tokens // 2  # the token and every later one
    app.selectbox(key="w_token").set_value(n_tokens - 1).run()  # the last token: seen by itself alone, and said so
    assert "last token's chart is one column" in " ".join(c.value for c in app.caption)
