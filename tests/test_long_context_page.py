"""The long-context page in real Streamlit (AppTest): its state from a link, and its messages."""
from __future__ import annotations

from tests.app_support import messages, run_app

PAGE = "pages/long_context.py"


def test_the_page_opens_with_both_sections_idle(smollm2):
    app = run_app(PAGE, lc_lengths="256,1024", lc_needles="2")
    assert not app.exception and not messages(app)
    assert [h.value for h in app.header] == ["Retrieval heads", "Streaming heads"]
    assert app.multiselect(key="w_lc_lengths").value == [256, 1024] and app.number_input(key="w_lc_needles").value == 2


def test_a_window_longer_than_the_text_says_so(smollm2):
    app = run_app(PAGE, lc_streaming="1", lc_window="500")
    assert not app.exception
    assert "no key is cut" in " ".join(i.value for i in app.info)


def test_the_lab_shows_the_lookback_ratio_of_the_generation(smollm2):
    import json

    app = run_app("pages/ablation_lab.py", ablate="L18H6:zero:0", gen_tokens="4", lab_lookback="1")
    assert not app.exception and not messages(app)
    figures = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    lookback = next(f for f in figures if f["layout"].get("title", {}).get("text", "").startswith("Lookback ratio"))
    assert len(lookback["data"][0]["x"]) == 4  # one column per generated step
    assert any(b.label == "Download lookback ratios (CSV)" for b in app.get("download_button"))
