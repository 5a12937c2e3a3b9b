"""The activation-patching page in real Streamlit (AppTest): grids, the link as the whole state, bad input."""
from __future__ import annotations

import base64
import json

import numpy as np

from analysis.datasets.probes import CORRUPTED_FACTUAL_PROMPT, CORRUPTED_IOI_PROMPT, FACTUAL_PROMPT, IOI_PROMPT
from tests.app_support import messages, run_app
from tests.app_support import rerun_until

PAGE = "pages/patching.py"


def _array(encoded) -> np.ndarray:
    """A Plotly array from a chart's JSON: a plain (nested) list or Plotly's base64 typed array with its shape."""
    if not isinstance(encoded, dict):
        return np.asarray(encoded, dtype=float)
    values = np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
    return values.reshape([int(n) for n in str(encoded.get("shape", len(values))).split(",")])


def _figures(app) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_ioi_grids_agree_and_every_control_is_in_the_link(smollm2):
    app = run_app(PAGE, patch_heads="L23H3", patch_residual="1")
    assert not app.exception, app.exception
    metrics = _metrics(app)
    assert metrics["Target / distractor"] == "␣Mary / ␣John"
    assert float(metrics["Rank correlation estimate vs exact"]) > 0.8
    table = app.dataframe[0].value
    assert table.iloc[0]["head"] == "L23H3" and table.iloc[0]["effect exact"] > 0.4
    figures = {figure["layout"]["title"]["text"]: figure["data"][0] for figure in _figures(app)}
    by_position = figures["Head × position: one head's output at one position"]
    assert by_position["y"] == ["L23H3"]
    assert np.argmax(_array(by_position["z"])[0]) == 13  # its output at the last token carries the effect
    stream = _array(figures["Residual stream entering each layer, patched at one position"]["z"])
    assert stream.shape == (30, 14) and np.argmax(stream[0]) == 9  # the embedding of the repeated name " John"
    assert stream[0, 9] > 0.99 and stream[-1, 13] > 0.9  # ... and at the last position near the top

    app.radio(key="w_patch_direction").set_value("noise").run()
    app.radio(key="w_patch_metric").set_value("logprob").run()
    assert not app.exception
    assert app.query_params["patch_direction"] == "noise" and app.query_params["patch_metric"] == "logprob"
    noised = app.dataframe[0].value
    assert noised.iloc[0]["head"] == "L23H3" and noised.iloc[0]["effect exact"] < 0.8  # necessary, too

    reopened = run_app(PAGE, **{key: app.query_params[key] for key in app.query_params})
    assert reopened.dataframe[0].value.equals(noised)
    assert reopened.text_input(key="w_patch_heads").value == "L23H3" and reopened.toggle(key="w_patch_residual").value


def test_a_built_in_pair_fills_both_prompts_and_the_tokens(smollm2):
    app = run_app(PAGE)
    app.selectbox(key="w_patch_pair").set_value("factual").run()
    assert not app.exception
    assert app.query_params["text"] == FACTUAL_PROMPT and app.query_params["compare_text"] == CORRUPTED_FACTUAL_PROMPT
    assert app.query_params["patch_target"] == " Paris" and app.query_params["patch_distractor"] == " Rome"
    assert _metrics(app)["Target / distractor"] == "␣Paris / ␣Rome"
    app.selectbox(key="w_patch_pair").set_value("induction").run()
    assert not app.exception and float(_metrics(app)["Metric, clean run"]) > 5


def test_bad_input_gives_messages(smollm2, minilm):
    app = run_app(PAGE, compare_text="When Mary and John went to the shop, Mary gave a drink to Bob")
    assert not app.exception
    assert "same token length" in messages(app) and "Corrupted prompt: When | ␣Mary" in messages(app)
    app = run_app(PAGE, compare_text="When Mary and John went to the store, John gave a drink to")
    assert "give the same metric value" in messages(app)
    app = run_app(PAGE, patch_heads="L99H1")
    assert "layer 99 does not exist" in messages(app)
    app = run_app(PAGE, model="minilm-l6", text="The cat sat on the mat.")
    assert not app.exception and "needs a causal language model" in app.info[0].value



def test_a_long_pair_patches_every_head_as_a_job_and_its_link_reopens_it(smollm2, job_database, monkeypatch):
    """A pair over the page's limit (lowered here from 256 tokens so the job is the IOI pair's 270 heads)."""
    import components.caches.patching as patching_caches

    monkeypatch.setattr(patching_caches, "IN_PAGE_TOKENS", 10)
    pair = {"text": IOI_PROMPT, "compare_text": CORRUPTED_IOI_PROMPT, "patch_target": " Mary",
            "patch_distractor": " John"}
    app = run_app(PAGE, **pair)
    assert not app.exception
    assert "Rank correlation estimate vs exact" not in _metrics(app)  # nothing exact runs in the page
    assert list(app.dataframe[0].value.columns) == ["head", "effect estimate"]
    assert "texts up to 10 tokens" in app.info[0].value  # the position grids say why they are not drawn
    app.button(key="patch_run_exact").click().run()
    job = app.query_params["job"]
    rerun_until(app, lambda a: "Rank correlation estimate vs exact" in _metrics(a) or bool(a.error))
    assert not app.error and list(app.dataframe[0].value.columns) == ["head", "effect exact", "effect estimate"]
    assert app.dataframe[0].value["effect exact"].abs().max() > 0.2
    reopened = run_app(PAGE, **pair, job=job)
    assert _metrics(reopened)["Rank correlation estimate vs exact"] == _metrics(app)["Rank correlation estimate vs exact"]


def test_the_estimate_of_kl_when_noising_is_shown_as_undefined_not_as_a_result(smollm2):
    app = run_app(PAGE, patch_metric="kl", patch_direction="noise")
    assert not app.exception
    assert _metrics(app)["Rank correlation estimate vs exact"] == "—"
    estimate = next(f["data"][0] for f in _figures(app) if f["layout"]["title"]["text"].startswith("Attribution"))
    assert not estimate.get("showscale", True) and np.ptp(_array(estimate["z"])) == 0  # one grey, no colour bar
    assert list(app.dataframe[0].value.columns) == ["head", "effect exact"]
    assert "no estimate of KL when noising" in app.info[0].value


def test_a_page_request_runs_each_prompt_once_and_names_each_step_while_it_runs(smollm2, monkeypatch):
    import streamlit as st

    import analysis.methods.patching as patching
    import components.caches.patching as patching_caches
    from analysis.memory_budget import shared_cache

    shared_cache().clear()
    st.cache_data.clear()
    prepared, original = [], patching.prepare_runs
    for module in (patching, patching_caches):
        monkeypatch.setattr(module, "prepare_runs", lambda *a, **k: prepared.append(1) or original(*a, **k))
    spinners, spinner = [], st.spinner
    monkeypatch.setattr(st, "spinner", lambda text, **options: spinners.append((text, options)) or spinner(text,
                                                                                                            **options))
    app = run_app(PAGE, patch_heads="L23H3")
    assert not app.exception and len(_figures(app)) == 3  # estimate, exact heads, head × position
    assert len(prepared) == 1  # both prompts run once, for the summary, the estimate and both exact grids
    steps = [(text, options) for text, options in spinners if text.startswith("Patching, step")]
    assert [text[:22] for text, _ in steps] == ["Patching, step 1 of 2:", "Patching, step 2 of 2:"]
    assert all(options.get("show_time") for _, options in steps)  # the seconds elapsed, on a long pair minutes
    spinners.clear()
    app.run()
    assert not app.exception and not [text for text, _ in spinners if text.startswith("Patching, step")]  # cached


def test_typed_tokens_are_shown_in_full_and_a_word_without_its_space_or_of_two_tokens_is_warned_about(smollm2):
    app = run_app(PAGE, patch_target=" Maryland", patch_distractor="John")
    assert not app.exception
    assert messages(app).startswith("Distractor: 'John' is used as typed, without a leading space")  # one warning
    assert any(c.value.startswith("Target ␣Maryland · distractor John (") for c in app.caption)
