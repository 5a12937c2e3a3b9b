"""The head view's QK breakdown in real Streamlit (AppTest): a cell from the link is explained, bad cells get a
message, and the breakdown's terms add up to the logit it shows."""
from __future__ import annotations

import json

import pytest

from tests.app_support import messages, run_app

HEAD = "pages/head_view.py"


def test_a_cell_from_the_link_is_explained(smollm2):
    app = run_app(HEAD, layer="18", head="6", qk_query="13", qk_key="4")
    assert not app.exception and not messages(app)
    metrics = {m.label: m.value for m in app.metric}
    assert set(metrics) >= {"Logit", "Attention weight", "Competitor"}
    charts = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    titles = [chart["layout"].get("title", {}).get("text", "") for chart in charts]
    assert any(title.startswith("Largest terms of the logit") for title in titles)
    assert float(metrics["Logit"]) == pytest.approx(float(titles[1].rsplit(" ", 1)[-1]), abs=0.01)
    assert [b.label for b in app.button if b.label.startswith("L")], "contributing heads can be opened"
    app.button(key="qk_clear").click().run()
    assert "qk_query" not in app.query_params and not app.exception


def test_a_key_after_the_query_gets_a_message(smollm2):
    app = run_app(HEAD, qk_query="3", qk_key="9")
    assert not app.exception
    assert "causal" in " ".join(i.value for i in app.info)


def test_the_qk_command_writes_terms_that_sum_to_the_logit(smollm2, tmp_path, capsys):
    import pandas as pd

    from analysis.cli.main import main

    out = tmp_path / "terms.csv"
    assert main(["qk", "--head", "L18H6", "--query", "13", "--key", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    logit = float(printed.split("logit ", 1)[1].split(" ", 1)[0])
    terms = pd.read_csv(out)
    assert list(terms.columns) == ["query_component", "key_component", "term"]
    assert terms["term"].sum() == pytest.approx(logit, abs=1e-3)
    assert main(["qk", "--head", "L18H6", "--query", "3", "--key", "9"]) == 2  # a key after the query
