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
