"""The rollout/flow, head-writes and compare pages in real Streamlit (AppTest), including bad links."""
from __future__ import annotations

import pytest

from tests.app_support import chart, messages, plotly_values, run_app

FLOW, WRITES, COMPARE = "pages/flow.py", "pages/head_writes.py", "pages/compare.py"


def _metrics(app) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_flow_page_shows_shares_that_sum_to_one(smollm2):
    app = run_app(FLOW, flow_token="9", flow_sink="1")
    assert not app.exception and not messages(app)
    strip = chart(app, 0)["data"][0]
    shares = plotly_values(strip["y"])
    assert shares.sum() == pytest.approx(1.0, abs=1e-6) and len(shares) == 14
    assert app.selectbox(key="w_flow_token").value == 9 and app.toggle(key="w_flow_sink").value
    assert len(app.get("plotly_chart")) == 3  # strip, rollout map, flow graph
    app.text_input(key="w_flow_heads").input("L23H*, L29H1").run()
    assert not app.exception and app.query_params["flow_heads"] == "L23H*, L29H1"
    assert "selected heads" in chart(app, 0)["layout"]["title"]["text"]


@pytest.mark.parametrize("params, expected", [
    ({"flow_heads": "L99H0"}, "layer 99 does not exist"),
    ({"flow_heads": "L2H3, banana"}, "'banana' is not a head"),
    ({"flow_token": "500"}, "token position 500 does not exist"),
    ({"flow_layer": "77"}, "layer 77 does not exist"),
    ({"flow_threshold": "0"}, "Ignored the link's 'flow_threshold'"),
])
def test_flow_page_bad_links(smollm2, params, expected):
    app = run_app(FLOW, **params)
    assert not app.exception
    assert expected in messages(app)
    assert len(app.get("plotly_chart")) == 3


def test_flow_page_on_the_encoder(minilm):
    app = run_app(FLOW, model="minilm-l6", text="The cat sat on the mat.", flow_all_edges="1")
    assert not app.exception and not messages(app)
    assert len(app.get("plotly_chart")) == 3


def test_writes_page_sum_matches_the_logit_and_ranks_heads(smollm2):
    app = run_app(WRITES, dla_target=" Mary", layer="29", head="1")
    assert not app.exception and not messages(app)
    metrics = _metrics(app)
    assert metrics["Logit of ␣Mary"] == metrics["Sum of all terms"] == "11.037"
    assert metrics["L29H1's direct logit for the model's prediction here (␣Mary)"] == "+2.168"
    assert app.dataframe[0].value["head"].iloc[0] == "L29H1"
    assert app.dataframe[1].value["head"].iloc[0] == "L29H0"  # pushes ' Mary' down most
    bars = chart(app, 0)["data"][0]
    assert "␣Mary #5099" in bars["y"]


def test_writes_page_bad_input_and_encoders(smollm2, minilm):
    app = run_app(WRITES, dla_target=" Marylebone", dla_token="99")
    assert not app.exception
    assert "is 3 tokens; using its first token" in messages(app) and "token position 99 does not exist" in messages(app)
    app = run_app(WRITES, model="minilm-l6", text="The cat sat on the mat.")
    assert not app.exception and "has no unembedding" in app.info[0].value


def test_compare_page_ranks_heads_and_selects_from_the_grid(smollm2):
    app = run_app(COMPARE, layer="24", head="4")
    assert not app.exception and not messages(app)
    table = app.dataframe[0].value
    assert table["head"].iloc[0] == "L24H4"
    assert float(_metrics(app)["L24H4: mean JS distance"]) == pytest.approx(table["js_distance"].iloc[0], abs=1e-4)
    assert len(app.get("plotly_chart")) == 4  # first, second, difference, the JS-distance grid
    app.text_area(key="w_compare_text").input("When Mary and John went to the park, John gave a drink to").run()
    assert not app.exception and "park" in app.query_params["compare_text"]


@pytest.mark.parametrize("params, expected", [
    ({"compare_model": "evil/model"}, "does not serve"),
    ({"compare_text": " "}, "The second run failed: The text is empty"),
    ({"compare_model": "minilm-l6"}, "split the text into different tokens"),
])
def test_compare_page_bad_input(smollm2, minilm, params, expected):
    app = run_app(COMPARE, **params)
    assert not app.exception
    assert expected in messages(app)
