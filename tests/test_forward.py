"""The forward on the model's own code equals the library's forward, and edits act only on the named heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.methods.reference import mean_bases
from analysis.runtime.forward import run_model
from analysis.runtime.interventions import HeadIntervention, compile_edits
from analysis.runtime.trace import run_trace
from tests.oracles import head_replaced, model_output


def _library_forward(handle, ids):
    with torch.no_grad():
        output = handle.model(ids, output_attentions=True)
    return getattr(output, "logits", None) if handle.info.causal else output.last_hidden_state, output.attentions


@pytest.mark.parametrize("fixture", ["tiny_llama_handle", "tiny_bert_handle"])
def test_forward_matches_library(request, fixture):
    handle = request.getfixturevalue(fixture)
    ids = handle.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    reference, attentions = _library_forward(handle, ids)
    result = run_model(handle, ids, keep_patterns=True)
    torch.testing.assert_close(result.logits, reference, rtol=0, atol=1e-5)
    for ours, theirs in zip(result.patterns, attentions):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_trace_shapes_rows_and_causal_mask(tiny_llama_handle):
    trace = run_trace(tiny_llama_handle, "hello world")
    layers, heads, queries, keys = trace.attentions.shape
    assert (layers, heads) == (2, 4) and queries == keys == len("hello world")
    np.testing.assert_allclose(trace.attentions.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(trace.attentions, k=1) == 0)
    assert trace.token_loss.shape == (queries - 1,)
    assert not trace.attentions.flags.writeable


def test_bert_trace_is_bidirectional(tiny_bert_handle):
    trace = run_trace(tiny_bert_handle, "the cat sat on the mat")
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    assert np.triu(trace.attentions, k=1).sum() > 0
    assert trace.top_next == [] and trace.token_loss is None


def test_scale_one_everywhere_is_exactly_clean(tiny_llama_handle):
    ids = tiny_llama_handle.tokenizer("abcdefgh").input_ids
    everything = [HeadIntervention(layer, head, "scale", 1.0) for layer in range(2) for head in range(4)]
    clean = run_model(tiny_llama_handle, ids).logits
    edited = run_model(tiny_llama_handle, ids, compile_edits([everything], 2, 4)).logits
    assert torch.equal(clean, edited)


def test_zero_ablation_matches_a_hook_on_the_output_projection(tiny_llama_handle):
    """Removing L1H2 through the call equals zeroing its slice of the output projection's input by a hook."""
    handle = tiny_llama_handle
    ids = handle.tokenizer("abcdefgh").input_ids
    with head_replaced(handle, 1, 2):
        by_hook = model_output(handle, ids)
    edited = run_model(handle, ids, compile_edits([[HeadIntervention(1, 2, "zero", 0.0)]], 2, 4))
    torch.testing.assert_close(edited.logits, by_hook, rtol=0, atol=1e-6)
    assert not torch.allclose(edited.logits, run_model(handle, ids).logits)


def test_batched_rows_are_independent(tiny_llama_handle):
    ids = tiny_llama_handle.tokenizer("abcdefgh").input_ids
    rows = [[], [HeadIntervention(0, 1)], [HeadIntervention(1, 3, "mean", 0.0)]]
    bases = mean_bases(tiny_llama_handle)
    batched = run_model(tiny_llama_handle, ids, compile_edits(rows, 2, 4, bases)).logits
    for index, row in enumerate(rows):
        single = run_model(tiny_llama_handle, ids, compile_edits([row], 2, 4, bases)).logits
        torch.testing.assert_close(batched[index:index + 1], single, rtol=0, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])
