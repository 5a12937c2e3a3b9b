"""The embedded models load offline, predict what they should, and the GGUF cache is faithful."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.runtime.loading import cache_root
from analysis.runtime.models import ModelLoadError, resolve_model
from analysis.datasets.probes import IOI_PROMPT
from analysis.runtime.trace import TextError, run_trace
from tests.oracles import stacked_patterns


def test_smollm2_completes_ioi_with_mary(smollm2):
    trace = run_trace(smollm2, IOI_PROMPT)
    assert trace.top_next[0].token == " Mary"
    assert trace.top_next[0].probability > 0.5
    patterns = stacked_patterns(trace)
    assert patterns.shape == (30, 9, trace.n_tokens, trace.n_tokens)
    np.testing.assert_allclose(patterns.sum(-1), 1.0, atol=1e-4)
    assert smollm2.info.n_kv_heads == 3 and smollm2.info.causal


def test_minilm_is_a_bidirectional_encoder(minilm):
    trace = run_trace(minilm, "The cat sat on the mat.")
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    assert trace.layer_patterns(5).shape[0] == 12 and trace.n_layers == 6
    assert not minilm.info.causal and trace.top_next == []


def test_gguf_cache_gives_identical_logits(smollm2):
    """Loading the GGUF directly (dequantizing again) and the cached safetensors copy agree exactly."""
    from transformers import AutoModelForCausalLM

    source = resolve_model("smollm2-135m")
    direct = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file,
                                                  attn_implementation="eager", dtype=torch.float32)
    ids = smollm2.tokenizer(IOI_PROMPT, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = direct(ids).logits
        cached = smollm2.model(ids).logits
    assert any(path.name.startswith("SmolLM2") for path in cache_root().iterdir())
    assert torch.equal(expected, cached)


def test_truncation_keeps_the_cap_and_says_so(smollm2):
    trace = run_trace(smollm2, ("one two three " * 50).strip(), max_tokens=16)
    assert trace.n_tokens == 16 and trace.truncated and trace.n_tokens_in_text == 150


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_text_is_refused(smollm2, text):
    with pytest.raises(TextError, match="empty"):
        run_trace(smollm2, text)


@pytest.mark.parametrize("name, message", [
    ("no-such-model", "Unknown model"),
    ("../../etc/passwd", "Unknown model"),
    ("", "No model named"),
])
def test_bad_model_names_get_clear_messages(name, message):
    with pytest.raises(ModelLoadError, match=message):
        resolve_model(name)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="not a model"):
        resolve_model(str(tmp_path))
