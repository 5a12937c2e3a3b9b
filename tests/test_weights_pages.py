"""The head page and the composition view in real Streamlit (AppTest) on SmolLM2."""
from __future__ import annotations

from tests.app_support import messages, run_app

HEAD_PAGE = "pages/head.py"
COMPOSITION = "pages/composition.py"


def test_head_page_gathers_the_heads_scores_and_opens_a_partner(smollm2):
    app = run_app(HEAD_PAGE, layer="18", head="6", ov_token=" Paris", qk_token=" the")
    assert not app.exception and not messages(app)
    assert app.title[0].value == "Head L18H6"
    assert "induction" in app.markdown[0].value  # the census label of the strongest induction head
    metrics = {metric.label: metric.value for metric in app.metric}
    assert float(metrics["copying (weights)"]) > 0  # an induction head copies
    assert {"induction (probe)", "successor (weights)"} <= set(metrics)
    partners = [button for button in app.button if button.label.startswith("L") and "×" in button.label]
    assert len(partners) >= 12  # up to 4 per kind, upstream and downstream
    upstream = partners[0]
    target = upstream.label.split(" ")[0]
    upstream.click().run()
    assert not app.exception
    assert app.title[0].value == f"Head {target}"
    layer, head = target[1:].split("H")
    assert app.query_params["layer"] == layer and app.query_params.get("head", "0") == head


def test_composition_view_lists_partners_grid_and_top_pairs(smollm2):
    app = run_app(COMPOSITION, layer="18", head="6", comp_kind="K", comp_top="10")
    assert not app.exception and not messages(app)
    per_kind = [frame.value for frame in app.dataframe[:3]]
    assert all(len(frame) == 8 and (frame["score"] > 0).all() for frame in per_kind)
    top = app.dataframe[3].value
    assert len(top) == 10 and top["score"].is_monotonic_decreasing
    assert (top["score"] > top["baseline"]).all()


def test_encoder_head_page_has_composition_but_no_vocabulary_circuits(minilm):
    app = run_app(HEAD_PAGE, model="minilm-l6", text="The cat sat on the mat.", layer="3", head="2")
    assert not app.exception and not messages(app)
    assert "No unembedding" in " ".join(caption.value for caption in app.caption)
    assert not [header for header in app.subheader if "OV" in header.value]
    assert any("×" in button.label for button in app.button)  # composition partners still listed
