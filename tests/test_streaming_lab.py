"""Streaming heads as lab interventions (``L3H1:stream:64``) on tiny models: the Atlas' run, the lab's loss and
the greedy generation with its KV cache equal the model's own eager attention given a per-head mask written out
by hand (the first tokens and a recent window, per restricted head)."""
from __future__ import annotations

import sys

import pytest
import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from analysis.methods.ablation import ablate, greedy_generate, selection_edits
from analysis.methods.ablation_spec import parse_ablation
from analysis.methods.metrics import token_loss
from analysis.runtime.forward import run_with_cache
from analysis.runtime.interventions import DEFAULT_SINK
from analysis.runtime.loading import make_handle
from tests.family_models import FAMILIES, build_family

pytestmark = pytest.mark.usefixtures("one_thread")
SELECTION = "L0H1:stream:2,L1H0:stream:0,L1H3:stream:5"
_WINDOWS: dict[tuple[int, int], int] = {}  # (layer, head) -> window: what the hand-masked attention restricts


def _hand_masked_attention(module, query, key, value, attention_mask, **kwargs):
    """The modeling file's eager attention with the restricted heads' keys blocked, cell by cell."""
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    first_query = n_keys - n_queries  # with a KV cache the queries are the last positions
    mask = attention_mask[:, :, :, :n_keys].expand(query.shape[0], query.shape[1], -1, -1).clone()
    for (layer, head), window in _WINDOWS.items():
        if layer != module.layer_idx:
            continue
        for row in range(n_queries):
            for column in range(n_keys):
                if column >= DEFAULT_SINK and first_query + row - column >= window:
                    mask[:, head, row, column] = torch.finfo(mask.dtype).min
    return sys.modules[type(module).__module__].eager_attention_forward(module, query, key, value, mask, **kwargs)


AttentionInterface.register("hand_streaming", _hand_masked_attention)
AttentionMaskInterface.register("hand_streaming", ALL_MASK_ATTENTION_FUNCTIONS["eager"])


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request):
    """A tiny causal family model (GQA; Gemma 3 with sliding-window layers)."""
    family = next(f for f in FAMILIES if f.name == request.param)
    model, tokenizer = build_family(family)
    return make_handle(family.name, model, tokenizer, "random", "cpu")


def _hand_masked_logits(handle, ids: torch.Tensor) -> torch.Tensor:
    """Oracle: a plain forward of the model with the hand-masked attention, then its own implementation back."""
    model = handle.model
    own = model.config._attn_implementation
    model.set_attn_implementation("hand_streaming")
    try:
        with torch.inference_mode():
            return model(ids, use_cache=False).logits
    finally:
        model.set_attn_implementation(own)


def test_streaming_heads_from_the_lab_equal_a_hand_written_mask(tiny, monkeypatch):
    selection = parse_ablation(SELECTION, 2, 4)
    monkeypatch.setattr(sys.modules[__name__], "_WINDOWS", {(e.layer, e.head): e.window for e in selection})
    ids = tiny.tokenizer("the cat sat on the mat, the dog sat on the log", return_tensors="pt").input_ids
    expected = _hand_masked_logits(tiny, ids)
    edits = selection_edits(tiny, [selection], ids)
    assert edits.heads.active_layers == frozenset() and edits.active_layers == {0, 1}
    torch.testing.assert_close(run_with_cache(tiny, ids, edits=edits).logits, expected, atol=1e-5, rtol=0)
    result = ablate(tiny, ids, selection)
    torch.testing.assert_close(torch.from_numpy(result.loss_after), token_loss(expected, ids)[0], atol=1e-5, rtol=0)
    assert abs(result.metrics["loss"]) > 1e-4  # the check can fail: the restriction changes the loss

    prompt, generated = ids[:, :10], []
    for _ in range(5):  # the oracle generates with full forwards, no KV cache
        step = torch.cat([prompt, torch.tensor([generated], dtype=ids.dtype)], dim=1)
        generated.append(int(_hand_masked_logits(tiny, step)[0, -1].argmax()))
    assert greedy_generate(tiny, prompt, selection, 5) == generated
