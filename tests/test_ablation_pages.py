"""The importance and ablation-lab pages in real Streamlit (AppTest), including bad links and bad head specs."""
from __future__ import annotations

import pytest

from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
from analysis.memory_budget import shared_cache
from analysis.runtime.interventions import HeadIntervention
from tests.app_support import messages, run_app
from tests.app_support import rerun_until

LAB = "pages/ablation_lab.py"
IMPORTANCE = "pages/importance.py"


def _top_prediction(app) -> str:
    return next(m.value for m in app.metric if m.label == "Top prediction after")


def _rows_table(app):
    """The knockout's per-row table (the one with a Δ loss column)."""
    return next(frame.value for frame in app.dataframe if "loss_delta" in frame.value.columns)


def test_moving_a_slider_changes_the_prediction_and_the_link(smollm2):
    app = run_app(LAB, ablate="L1H5:zero:1")
    assert not app.exception
    unchanged = _top_prediction(app)
    assert unchanged.startswith("␣Mary (92")
    app.slider(key="w_lab_scale_L1H5").set_value(0.0).run()
    assert not app.exception
    removed = _top_prediction(app)
    assert removed != unchanged and removed.startswith("␣Mary (")
    assert app.query_params["ablate"] == "L1H5:zero:0"
    app.selectbox(key="w_lab_mode_L1H5").set_value("mean").run()
    assert app.query_params["ablate"] == "L1H5:mean:0" and _top_prediction(app) not in (unchanged, removed)


def test_a_slider_move_parses_the_selection_once_and_the_caches_take_it_as_a_value(smollm2, monkeypatch):
    import analysis.methods.ablation_spec as spec_module
    import components.caches.ablation as lab_caches
    import components.widgets.lab_selection as lab_selection

    app = run_app(LAB, ablate="L1H5:zero:1,L3H2:resample:0.5", gen_tokens="2")
    parsed, original = [], spec_module.parse_ablation
    for module in (spec_module, lab_selection, lab_caches):
        monkeypatch.setattr(module, "parse_ablation", lambda *a, **k: parsed.append(a[0]) or original(*a, **k),
                            raising=False)
    app.slider(key="w_lab_scale_L1H5").set_value(0.5).run()
    assert not app.exception
    assert len(parsed) == 2  # the slider's callback and the page, never again in a cache
    selection = (HeadIntervention(1, 5, "zero", 0.5), HeadIntervention(3, 2, "resample", 0.5))
    assert shared_cache().get(lab_caches.cached_ablation.cache_key(
        "smollm2-135m", IOI_PROMPT, 256, selection, ("loss", 0, 0, None), CORRUPTED_IOI_PROMPT)) is not None


@pytest.mark.parametrize("spec, expected", [
    ("L99H0", "L99H0: layer 99 does not exist (layers 0–29)"),
    ("foo", "'foo' is not a head"),
    ("L1H1:zero:7", "outside 0–2"),
])
def test_a_bad_head_spec_in_the_link_gives_a_clear_message(smollm2, spec, expected):
    app = run_app(LAB, ablate=spec)
    assert not app.exception
    assert expected in messages(app) and "Fix it in the Heads box" in messages(app)
    assert app.text_input(key="lab_heads").value == spec


def test_typing_heads_replaces_the_selection_and_bad_input_is_refused(smollm2):
    app = run_app(LAB)
    app.text_input(key="lab_heads").input("L14H*, L3H1:mean:0.5").run()
    assert not app.exception
    assert app.query_params["ablate"] == ",".join([f"L14H{h}:zero:0" for h in range(9)] + ["L3H1:mean:0.5"])
    assert app.slider(key="w_lab_scale_L3H1").value == 0.5
    app.text_input(key="lab_heads").input("L12H3, L99H0").run()
    assert "layer 99 does not exist" in messages(app) and "The selection was not changed" in messages(app)
    assert app.query_params["ablate"].startswith("L14H0:zero:0")


def test_presets_fill_the_selection(smollm2):
    app = run_app(LAB)
    app.selectbox(key="lab_preset").set_value("layer").run()
    app.number_input(key="lab_preset_layer").set_value(3)
    app.button(key="lab_preset_apply").click().run()
    assert app.query_params["ablate"] == ",".join(f"L3H{h}:zero:0" for h in range(9))
    app.selectbox(key="lab_preset").set_value("random").run()
    app.number_input(key="lab_preset_k").set_value(4)
    app.button(key="lab_preset_apply").click().run()
    assert len(app.query_params["ablate"].split(",")) == 4
    app.selectbox(key="lab_preset").set_value("induction")
    app.button(key="lab_preset_apply").click().run()
    assert not app.exception
    assert len(app.query_params["ablate"].split(",")) == 4 and app.query_params["ablate"] != ""


def test_lab_on_the_encoder_shows_hidden_state_change(minilm):
    app = run_app(LAB, model="minilm-l6", text="The cat sat on the mat.", ablate="L0H3")
    assert not app.exception
    assert any(m.label.startswith("Mean relative change") for m in app.metric)


def _correlation(app) -> str | None:
    return next((m.value for m in app.metric if m.label.startswith("Rank correlation")), None)


def test_importance_shows_the_gradient_at_once_and_runs_the_exact_ablation_as_a_job(smollm2, job_database):
    app = run_app(IMPORTANCE, metric="logprob", target=" Mary")
    assert not app.exception and _correlation(app) is None  # nothing exact runs on page load
    assert list(app.dataframe[0].value.columns) == ["head", "gradient estimate", "|gradient|"]
    app.button(key="importance_run_exact").click().run()
    job = app.query_params["job"]
    rerun_until(app, lambda a: _correlation(a) is not None or bool(a.error))
    assert 0.5 < float(_correlation(app)) <= 1.0
    table = app.dataframe[0].value
    assert table["head"].iloc[0] == "L1H5" and table["exact Δ"].iloc[0] < -0.3
    opened = run_app(IMPORTANCE, metric="logprob", target=" Mary", job=job)  # the link: the stored result
    assert not opened.exception and _correlation(opened) == _correlation(app)
    changed = run_app(IMPORTANCE, metric="kl", job=job)  # another metric: not that job's result
    assert not changed.exception and _correlation(changed) is None and "job" not in changed.query_params


def test_importance_bad_links_and_encoders(smollm2, minilm):
    app = run_app(IMPORTANCE, metric="foo", span_start="9", span_end="3")
    assert not app.exception
    assert "Ignored the link's 'metric'" in messages(app) and "Using the whole text" in messages(app)
    app = run_app(IMPORTANCE, model="minilm-l6", text="The cat sat on the mat.")
    assert not app.exception and "is an encoder" in app.info[0].value and "Ablation lab" in app.info[0].value


def test_resampling_a_head_takes_its_output_from_the_second_text(smollm2):
    """IOI: L1H5's output taken from the corrupted prompt (same length) changes the prediction; other lengths are refused."""
    app = run_app(LAB, ablate="L1H5:resample:0")
    assert not app.exception
    assert app.text_area(key="w_compare_text").value.endswith("Mary gave a drink to")
    resampled = _top_prediction(app)
    zeroed = _top_prediction(run_app(LAB, ablate="L1H5:zero:0"))
    assert resampled.startswith("␣Mary (") and resampled != zeroed
    app.text_area(key="w_compare_text").input("A much shorter text.").run()
    assert not app.exception
    assert "same number of tokens: the text has" in messages(app)


def test_the_all_heads_row_of_a_mixed_selection_does_not_read_as_every_head_removed(smollm2):
    app = run_app(LAB, ablate="L1H5:zero:2,L23H3:resample:0", gen_tokens="0")
    assert not app.exception
    assert app.slider(key="w_lab_scale_all").value == 1.0  # not 0.00, which reads as every head removed
    assert any("heads differ: each keeps its own setting" in m.value for m in app.markdown)


def test_streaming_heads_change_the_prediction_once_their_window_misses_the_text(smollm2):
    app = run_app(LAB, ablate="L0H*:stream:64")  # a window covering the 15 tokens: the clean run
    assert not app.exception and not messages(app)
    delta = lambda: next(m.value for m in app.metric if m.label == "Δ loss")  # noqa: E731
    unchanged = _top_prediction(app)
    assert abs(float(delta())) < 1e-4 and unchanged.startswith("␣Mary (92")
    assert app.selectbox(key="w_lab_mode_L0H0").value == "stream"
    assert "sees the first 4 + last 64 tokens" in " ".join(m.value for m in app.markdown)
    app.number_input(key="w_lab_window_all").set_value(1).run()
    assert not app.exception
    assert app.query_params["ablate"] == ",".join(f"L0H{h}:stream:1" for h in range(9))
    assert float(delta()) > 0.01 and _top_prediction(app) != unchanged
    app = run_app(LAB, ablate="L1H5:zero:0")  # one head's row: to streaming, a narrower window, and back
    app.selectbox(key="w_lab_mode_L1H5").set_value("stream").run()
    assert app.query_params["ablate"] == "L1H5:stream:64" and not app.exception
    app.number_input(key="w_lab_window_L1H5").set_value(8).run()
    assert app.query_params["ablate"] == "L1H5:stream:8"
    app.selectbox(key="w_lab_mode_L1H5").set_value("zero").run()
    assert app.query_params["ablate"] == "L1H5:zero:0" and not app.exception


def _mean_loss(app) -> str | None:
    return next((m.value for m in app.metric if m.label == "Mean Δ loss"), None)


def test_the_lab_sweeps_its_selection_over_a_dataset_and_shows_the_mean_with_its_interval(smollm2, job_database):
    from analysis.datasets.generators import natural_text_dataset
    from analysis.jobs.kinds import KINDS, compute_rows

    link = dict(ablate="L1H5:zero:0,L3H*:stream:2", ds_source="natural", ds_n="3", gen_tokens="0")
    app = run_app(LAB, **link)
    assert not app.exception and _mean_loss(app) is None
    app.button(key="lab_sweep_start").click().run()
    job = app.query_params["job"]
    rerun_until(app, lambda a: _mean_loss(a) is not None or bool(a.error))
    assert not app.exception and not messages(app)
    texts = natural_text_dataset(3).texts
    rows, _ = compute_rows(smollm2, KINDS["knockout"], [(i, {"text": t}) for i, t in enumerate(texts)],
                           {"selection": link["ablate"]}, 256)
    mean = _mean_loss(app)
    assert float(mean) == pytest.approx(rows["loss_delta"].mean(), abs=2e-4)
    assert "95 % intervals of the mean (n = 3)" in " ".join(c.value for c in app.caption)
    assert list(_rows_table(app)["row"]) == [0, 1, 2]
    app.text_input(key="lab_heads").set_value("L1H5").run()  # another selection: its own sweep, and no warning
    assert not messages(app) and "job" not in app.query_params and _mean_loss(app) is None
    assert any(button.key == "lab_sweep_start" for button in app.button)

    opened = run_app(LAB, **link, job=job)  # the link reopens the finished sweep
    assert not opened.exception and not messages(opened) and _mean_loss(opened) == mean
    opened.button(key="knockout_open_row").click().run()  # row 0 of the sweep becomes the lab's text
    assert opened.query_params["text"] == texts[0] and _mean_loss(opened) == mean
    retyped = run_app(LAB, **{**link, "ablate": "L3H*:stream:2, L1H5"})  # the same heads typed otherwise
    assert retyped.query_params["job"] == job and _mean_loss(retyped) == mean  # reuse, nothing to start


def test_the_lab_sweep_refuses_resampling_without_pairs(smollm2, job_database):
    app = run_app(LAB, ablate="L1H5:resample:0", ds_source="natural", ds_n="3", gen_tokens="0")
    assert not app.exception and "sweep pair rows" in messages(app)
    assert not any(button.key == "lab_sweep_start" for button in app.button)
