"""A new user's walk through the pages, in real Streamlit (AppTest): state that must not go stale, controls that
must say what they do, and models that cannot load. The browser-only parts are in test_browser_ui_review.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.datasets.probes import EXAMPLE_TEXTS
from analysis.runtime.models import EMBEDDED_MODELS, EmbeddedModel
from components.figures.compare import MAX_CELLS, pattern_panel
from tests.app_support import messages, run_app

LAB, CENSUS, FLOW, COMPARE = "pages/ablation_lab.py", "pages/census.py", "pages/flow.py", "pages/compare.py"
OVERVIEW = "pages/overview.py"
ENCODER = {"model": "minilm-l6", "text": "The cat sat on the mat. It purred, and then it slept."}


def _figures(app) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def _texts(app) -> str:
    return " ".join(e.value for kind in ("info", "success", "warning", "error", "caption") for e in getattr(app, kind))


def test_an_example_resets_the_token_pickers_and_leaves_the_examples_box_when_the_text_is_edited(smollm2):
    app = run_app(FLOW, flow_token="9", dla_token="3")
    app.selectbox(key="w_example").set_value("Paragraph").run()
    assert not app.exception
    assert app.text_area(key="w_text").value == EXAMPLE_TEXTS["Paragraph"]
    assert "flow_token" not in app.query_params and "dla_token" not in app.query_params  # back to the last token
    picker = app.selectbox(key="w_flow_token")
    assert picker.value == len(picker.options) - 1 > 13
    app.text_area(key="w_text").input("The cat sat on the mat.").run()
    assert app.selectbox(key="w_example").value == "—"  # the box no longer claims the text is the paragraph


def test_a_model_that_is_not_installed_is_not_offered_and_says_how_to_install_it(smollm2, monkeypatch):
    ghost = EmbeddedModel("ghost-1b", "Ghost-1B (test decoder)", "ghost-pkg", "ghost_pkg_is_not_installed", None, True,
                          "pip install ghost-pkg")
    monkeypatch.setitem(EMBEDDED_MODELS, ghost.name, ghost)
    app = run_app(OVERVIEW)
    assert not app.exception
    assert "ghost-1b" not in app.selectbox(key="w_model_choice").options
    assert any(name.startswith("SmolLM2") for name in app.selectbox(key="w_model_choice").options)
    assert "Not installed: Ghost-1B (`pip install ghost-pkg`)" in _texts(app)
    assert "ghost-1b" not in run_app(COMPARE).selectbox(key="w_compare_model").options


def test_the_lab_opens_on_the_clean_run_with_a_hint(smollm2):
    app = run_app(LAB)
    assert not app.exception
    assert "Pick heads to see what changes" in app.info[0].value
    bars, loss = _figures(app)[1:3]  # after the selection grid
    assert [trace["name"] for trace in bars["data"]] == ["clean"] and "␣Mary" in bars["data"][0]["y"][-1]
    assert [trace["name"] for trace in loss["data"]] == ["clean"]
    assert not any(m.label == "Top prediction after" for m in app.metric)


def test_lab_rows_read_as_one_intervention_and_the_all_heads_row_applies_at_once(smollm2):
    app = run_app(LAB, ablate="L1H5:zero:0,L2H3:mean:0.5,L3H1:zero:2")
    assert not app.exception
    notes = " ".join(m.value for m in app.markdown)
    assert "**L1H5** · :small[removed]" in notes and ":small[50% of the way to its mean]" in notes
    assert ":small[×2.00]" in notes
    assert not [b for b in app.button if b.label == "Set"]
    # the mixed selection's common row starts at "unchanged" (1.00); no button: a change applies to every head
    app.slider(key="w_lab_scale_all").set_value(0.5).run()
    assert app.query_params["ablate"] == "L1H5:zero:0.5,L2H3:zero:0.5,L3H1:zero:0.5"
    assert app.slider(key="w_lab_scale_L2H3").value == 0.5 and app.selectbox(key="w_lab_mode_L2H3").value == "zero"


@pytest.mark.parametrize("preset, inputs", [("induction", ["k"]), ("sink", []), ("layer", ["layer"]),
                                            ("random", ["k", "seed"])])
def test_presets_show_only_the_inputs_they_use(smollm2, preset, inputs):
    app = run_app(LAB)
    app.selectbox(key="lab_preset").set_value(preset).run()
    assert [box.label for box in app.number_input if box.key.startswith("lab_preset_")] == inputs


def test_census_presets_take_the_heads_the_census_labels_and_say_so(smollm2, minilm):
    app = run_app(LAB, model="minilm-l6", text=ENCODER["text"])
    app.selectbox(key="lab_preset").set_value("induction").run()
    app.button(key="lab_preset_apply").click().run()
    assert not app.exception
    assert "The census labels no head of all-MiniLM-L6-v2 as induction" in messages(app)
    assert "ablate" not in app.query_params
    app = run_app(LAB)
    app.button(key="lab_preset_apply").click().run()
    assert app.query_params["ablate"] == "L18H6:zero:0,L17H4:zero:0,L17H3:zero:0,L17H5:zero:0,L18H7:zero:0"
    assert "The census labels 9 induction heads" in app.success[0].value and "top 5" in app.success[0].value


def test_grid_hovers_say_what_a_click_does(smollm2):
    lab = _figures(run_app(LAB, ablate="L1H5"))[0]
    assert "click to add or remove it" in lab["data"][-1]["hovertemplate"]
    census = _figures(run_app(CENSUS))[0]
    assert "click to open it in the head view" in census["data"][-1]["hovertemplate"]
    compare = _figures(run_app(COMPARE))[-1]
    assert "click to select it" in compare["data"][-1]["hovertemplate"]


def test_census_names_scores_in_words_and_offers_cls_sep_only_for_encoders(smollm2, minilm):
    app = run_app(CENSUS, census_score="induction_text", text="One two three four five.")
    assert not app.exception
    options = app.selectbox(key="w_census_score").options
    assert "induction (probe)" in options and "duplicate_token" not in options
    assert "[CLS] mass" not in options and "[SEP] mass" not in options
    assert app.info[0].value.startswith("SmolLM2-135M-Instruct: ")  # as the model picker names it
    assert "Uncoloured cells: the score is not defined" in _texts(app)
    encoder = run_app(CENSUS, **ENCODER).selectbox(key="w_census_score").options
    assert "[CLS] mass" in encoder and "[SEP] mass" in encoder
    app = run_app(CENSUS, census_score="cls_mass")
    assert "measured only for encoders" in messages(app) and app.selectbox(key="w_census_score").value == "induction"


def test_next_token_table_shows_special_tokens_as_written(smollm2):
    chat = "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello! How can I help you today?"
    app = run_app(OVERVIEW, text=chat)
    assert not app.exception
    assert app.dataframe[0].value["next token"].iloc[0] == "<|im_end|>"


def test_rollout_excludes_the_sink_by_default_on_causal_models_only(smollm2, minilm):
    app = run_app(FLOW)
    assert app.toggle(key="w_flow_sink").value and "flow_sink" not in app.query_params
    app.toggle(key="w_flow_sink").set_value(False).run()
    assert app.query_params["flow_sink"] == "0"
    assert not run_app(FLOW, **ENCODER).toggle(key="w_flow_sink").value


def test_compare_aligns_texts_of_different_lengths_and_says_what_was_left_out(smollm2):
    app = run_app(COMPARE, layer="24", head="4",
                  compare_text="When Mary and John went to the big store, John gave a drink to")
    assert not app.exception
    assert "14 token pairs are compared" in app.info[0].value and "␣big (7)" in app.info[0].value
    first, second, difference = _figures(app)[:3]
    assert len(difference["data"][0]["y"]) == 14 and "␣store (7→8)" in difference["data"][0]["y"]
    assert [len(first["data"][0]["y"]), len(second["data"][0]["y"])] == [14, 15]
    # tokens after the insertion are compared with their partners: the distance stays small
    assert float(next(m.value for m in app.metric if m.label.startswith("L24H4"))) < 0.05


def test_compare_draws_long_texts_pooled_in_small_figures(smollm2):
    text = " ".join(EXAMPLE_TEXTS["Paragraph"] for _ in range(8))
    app = run_app(COMPARE, text=text, compare_text=text.replace("many artists", "many famous artists"),
                  max_tokens="400")
    assert not app.exception
    assert "drawn pooled" in _texts(app)
    assert all(len(chart.proto.spec) < 3_000_000 for chart in app.get("plotly_chart"))


def test_a_4096_token_pattern_draws_under_three_megabytes():
    pattern = np.tril(np.random.default_rng(0).random((4096, 4096), dtype=np.float32))
    figure = pattern_panel(pattern / pattern.sum(-1, keepdims=True), [f"t{i} ({i})" for i in range(4096)])
    assert len(figure.to_json()) < 3_000_000 and len(figure.data[0].y) == MAX_CELLS


def test_the_overview_of_an_encoder_does_not_claim_its_heads_can_be_read_as_logits(minilm):
    app = run_app(OVERVIEW, **ENCODER)
    assert not app.exception
    assert "head writes read as logits ✗" in _texts(app)


def test_the_rollout_caption_states_its_known_limit_instead_of_promising_to_see_past_the_sink(smollm2):
    app = run_app(FLOW)
    assert not app.exception
    assert "to see past it" not in _texts(app) and "the pile moves to the next early token" in _texts(app)


def test_at_the_largest_token_cap_the_warning_does_not_ask_to_raise_it(smollm2, monkeypatch):
    import components.page

    monkeypatch.setattr(components.page, "token_cap", lambda handle: 8)  # the IOI prompt has 14 tokens
    app = run_app("pages/head_view.py", max_tokens="8")
    assert not app.exception
    assert "raise the token cap" not in messages(app) and "8 is the most this model's pages analyse" in messages(app)
    app = run_app("pages/head_view.py", max_tokens="4")
    assert "raise the token cap in the sidebar, up to 8" in messages(app)
