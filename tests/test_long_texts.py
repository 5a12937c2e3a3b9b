"""Long texts: memory that grows linearly, exact patterns on demand, and pages whose figures stay light."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis.datasets.probes import repeated_random_text
from analysis.runtime.forward import run_patterns
from analysis.runtime.pooling import thumbnails
from analysis.runtime.trace import HARD_MAX_TOKENS, run_trace
from tests.app_support import messages, run_app

FIGURE_LIMIT = 3_000_000  # bytes of one figure sent to the browser


def test_trace_memory_grows_linearly_and_patterns_equal_the_full_run(tiny_llama_handle):
    short, long = (run_trace(tiny_llama_handle, "abcdefgh" * n, max_tokens=8 * n) for n in (8, 32))
    assert long.n_tokens == 4 * short.n_tokens == 256  # the tiny model's context
    assert long.nbytes < 4.5 * short.nbytes  # quadratic patterns would make it 16×
    ids = torch.from_numpy(long.token_ids.copy())[None]
    expected = run_patterns(tiny_llama_handle, ids).stack("pattern")
    # the trace's stream comes from the fused kernel, the full run keeping patterns is eager: float noise only
    for layer in range(long.n_layers):
        np.testing.assert_allclose(long.layer_patterns(layer), expected[layer][0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(long.token_attention(200, "to"), np.stack(
        [p[0, :, :, 200].numpy() for p in expected]), rtol=0, atol=1e-6)
    assert long.thumbnails.shape == (2, 4, 64, 64)
    for layer in range(long.n_layers):  # read through the attention, never from a pattern: block means all the same
        pooled, without_sink = thumbnails(expected[layer][0], 64)
        np.testing.assert_allclose(long.thumbnails[layer], pooled, rtol=0, atol=1e-6)
        np.testing.assert_allclose(long.thumbnails_without_sink[layer], without_sink, rtol=0, atol=1e-6)
    assert np.abs(long.thumbnails_without_sink - long.thumbnails).max() > 1e-3


def test_token_cap_is_the_context_or_4096(tiny_llama_handle, smollm2):
    from analysis.runtime.trace import token_cap
    assert token_cap(smollm2) == HARD_MAX_TOKENS == 4096
    assert token_cap(tiny_llama_handle) == min(4096, tiny_llama_handle.parts.config.max_position_embeddings)


@pytest.fixture(scope="module")
def long_link(smollm2, tmp_path_factory):
    """A short link (the way long texts travel) to a 1,100-token text, longer than the old cap, in a database
    of its own."""
    from components.share_links import share_store
    patch = pytest.MonkeyPatch()
    patch.setenv("ATLAS_DB_PATH", str(tmp_path_factory.mktemp("db") / "atlas.sqlite"))
    share_store.clear()
    text = repeated_random_text(smollm2.tokenizer, 560, seed=3)
    state = {"model": "smollm2-135m", "text": text, "max_tokens": 1100, "layer": 21, "head": 3}
    yield share_store().create_view(state, smollm2.info.revision)
    share_store.clear()
    patch.undo()


def _figure_sizes(app) -> list[int]:
    return [len(chart.proto.spec) for chart in app.get("plotly_chart")]


@pytest.mark.parametrize("page, extra", [
    ("pages/head_view.py", {}),
    ("pages/head_view.py", {"side_by_side": "1"}),
    ("pages/token_view.py", {"token_per_head": "1"}),
    ("pages/flow.py", {}),
    ("pages/overview.py", {}),
])
def test_pages_open_a_long_text_with_light_figures(smollm2, long_link, page, extra):
    app = run_app(page, s=long_link, **extra)
    assert not app.exception, app.exception
    assert "only the first 1,100 are analysed" in messages(app)  # the text has a few more tokens than the cap
    sizes = _figure_sizes(app)
    assert sizes and max(sizes) < FIGURE_LIMIT, sizes


def test_head_view_zoom_window_moves_and_shows_real_tokens(smollm2, long_link):
    app = run_app("pages/head_view.py", s=long_link)
    pooled, window = (json.loads(chart.proto.spec) for chart in app.get("plotly_chart"))
    assert len(pooled["data"][0]["y"]) == 192 and "–" in pooled["data"][0]["y"][0]  # block labels
    assert window["data"][0]["y"][0].endswith("(940)")  # the last 160 queries by default
    app.number_input(key="w_zoom_query").set_value(100).run()
    assert app.number_input(key="w_zoom_key").value == 100  # the key field follows the rows until it is set
    app.number_input(key="w_zoom_key").set_value(40).run()
    from components.share_links import share_store
    assert not app.exception and app.query_params["s"] != long_link  # a long text's state travels as a short link
    assert share_store().load_view(app.query_params["s"]).state["zoom_query"] == "100"
    window = json.loads(app.get("plotly_chart")[1].proto.spec)
    assert window["data"][0]["y"][0].endswith("(100)") and window["data"][0]["x"][0].endswith("(40)")
    rectangle = pooled["layout"]["shapes"][0]
    assert rectangle["line"]["color"] == "crimson"
