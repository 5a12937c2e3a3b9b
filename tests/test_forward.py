"""The forward on the model's own code equals the library's forward, and edits act only on the named heads."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from analysis.methods.reference import mean_bases
from analysis.runtime.forward import run_with_cache
from analysis.runtime.interventions import HeadIntervention, compile_edits
from analysis.runtime.trace import run_trace
from tests.oracles import head_replaced, head_rewritten, model_output, stacked_patterns


def _library_forward(handle, ids):
    """Plain transformers eager code: a copy of the model switched back to the library's own "eager"."""
    plain = copy.deepcopy(handle.model)
    plain.set_attn_implementation("eager")
    assert plain.config._attn_implementation == "eager" != handle.model.config._attn_implementation
    with torch.no_grad():
        output = plain(ids, output_attentions=True)
    return getattr(output, "logits", None) if handle.info.causal else output.last_hidden_state, output.attentions


@pytest.mark.parametrize("fixture", ["tiny_llama_handle", "tiny_bert_handle"])
def test_forward_matches_library(request, fixture):
    handle = request.getfixturevalue(fixture)
    ids = handle.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    reference, attentions = _library_forward(handle, ids)
    result = run_with_cache(handle, ids, sites=("pattern",))
    torch.testing.assert_close(result.logits, reference, rtol=0, atol=1e-5)
    for ours, theirs in zip(result.stack("pattern"), attentions):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(run_with_cache(handle, ids).logits, reference, rtol=0, atol=1e-5)  # fused kernel


def test_trace_shapes_rows_and_causal_mask(tiny_llama_handle):
    trace = run_trace(tiny_llama_handle, "hello world")
    patterns = stacked_patterns(trace)
    layers, heads, queries, keys = patterns.shape
    assert (layers, heads) == (2, 4) and queries == keys == len("hello world")
    np.testing.assert_allclose(patterns.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(patterns, k=1) == 0)
    assert trace.token_loss.shape == (queries - 1,)
    assert not trace.pattern(1, 2).flags.writeable and trace.residuals.shape == (2, queries, 32)


def test_bert_trace_is_bidirectional(tiny_bert_handle):
    trace = run_trace(tiny_bert_handle, "the cat sat on the mat")
    assert trace.tokens[0] == "[CLS]" and trace.tokens[-1] == "[SEP]"
    assert np.triu(stacked_patterns(trace), k=1).sum() > 0
    assert trace.top_next == [] and trace.token_loss is None


@pytest.mark.parametrize("mode, scale", [("scale", 0.5), ("scale", 2.0), ("mean", 0.25)])
def test_scaled_head_equals_a_hook_rewriting_its_output(tiny_llama_handle, mode, scale):
    """z' = base + scale · (z − base) through the call equals a hook rewriting L1H2's slice of o_proj's input."""
    handle = tiny_llama_handle
    ids = handle.tokenizer("abcdefgh").input_ids
    bases = mean_bases(handle)
    base = bases.mean[1, 2] if mode == "mean" else 0.0
    with head_rewritten(handle, 1, 2, lambda z: base + scale * (z - base)):
        by_hook = model_output(handle, ids)
    edited = run_with_cache(handle, ids, edits=compile_edits([[HeadIntervention(1, 2, mode, scale)]], 2, 4, bases))
    torch.testing.assert_close(edited.logits, by_hook, rtol=0, atol=1e-6)
    assert (edited.logits - run_with_cache(handle, ids).logits).abs().max() > 1e-4


def test_zero_ablation_matches_a_hook_on_the_output_projection(tiny_llama_handle):
    """Removing L1H2 through the call equals zeroing its slice of the output projection's input by a hook."""
    handle = tiny_llama_handle
    ids = handle.tokenizer("abcdefgh").input_ids
    with head_replaced(handle, 1, 2):
        by_hook = model_output(handle, ids)
    edited = run_with_cache(handle, ids, edits=compile_edits([[HeadIntervention(1, 2, "zero", 0.0)]], 2, 4))
    torch.testing.assert_close(edited.logits, by_hook, rtol=0, atol=1e-6)
    assert not torch.allclose(edited.logits, run_with_cache(handle, ids).logits)


def test_batched_rows_are_independent(tiny_llama_handle):
    ids = tiny_llama_handle.tokenizer("abcdefgh").input_ids
    rows = [[], [HeadIntervention(0, 1)], [HeadIntervention(1, 3, "mean", 0.0)]]
    bases = mean_bases(tiny_llama_handle)
    batched = run_with_cache(tiny_llama_handle, ids, edits=compile_edits(rows, 2, 4, bases)).logits
    for index, row in enumerate(rows):
        single = run_with_cache(tiny_llama_handle, ids, edits=compile_edits([row], 2, 4, bases)).logits
        torch.testing.assert_close(batched[index:index + 1], single, rtol=0, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_checkpointed_gradients_equal_plain_ones(tiny_llama_handle, monkeypatch):
    """Long texts run the gradient forward layer by layer with checkpointing: the same gradients."""
    from analysis.runtime import forward
    from analysis.runtime.interventions import EditBases, gate_edits

    ids = torch.tensor([[3, 9, 17, 4, 22, 9, 17, 30, 41, 5, 9, 17]])

    def gate_gradient() -> torch.Tensor:
        gates = torch.ones(2, 4, requires_grad=True)
        logits = run_with_cache(tiny_llama_handle, ids, edits=gate_edits(gates, "zero", EditBases()), grad=True).logits
        torch.log_softmax(logits[0, -1], -1)[7].backward()
        return gates.grad

    plain = gate_gradient()
    monkeypatch.setattr(forward, "CHECKPOINT_TOKENS", 4)
    checkpointed = gate_gradient()
    assert plain.abs().sum() > 0
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-7)
