"""Direct logit attribution: the terms add up to the logit, the top heads for ' Mary' matter when ablated."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.runtime.forward import run_with_cache
from analysis.runtime.interventions import HeadIntervention, compile_edits
from analysis.methods.logit_attribution import LogitAttributionUnsupported, attribution_terms, decompose, \
    head_attribution, head_logit_lens
from analysis.runtime.norms import freeze_norm
from analysis.methods.metrics import resolve_target
from analysis.datasets.probes import IOI_PROMPT
from analysis.runtime.trace import encode_text


@pytest.fixture(scope="module")
def ioi(smollm2):
    ids = encode_text(smollm2, IOI_PROMPT)[0]
    mary, _ = resolve_target(smollm2.tokenizer, " Mary")
    return ids, decompose(smollm2, ids), mary


@pytest.mark.parametrize("position", [0, 3, -1])
def test_terms_add_up_to_every_logit_on_a_tiny_model(tiny_llama_handle, position):
    ids = encode_text(tiny_llama_handle, "the cat sat on the mat")[0]
    decomposition = decompose(tiny_llama_handle, ids, position)
    unembedding = tiny_llama_handle.parts.unembedding.weight.detach().numpy()
    np.testing.assert_allclose(unembedding @ decomposition.total, decomposition.logits, atol=1e-4)
    terms = attribution_terms(tiny_llama_handle, decomposition, 7)
    assert len(terms) == 1 + 2 * (4 + 2) + 2  # embedding, 2 layers × (4 heads + bias + MLP), norm and output bias
    assert terms["dla"].sum() == pytest.approx(float(decomposition.logits[7]), abs=1e-4)


def test_the_frozen_norm_is_the_final_norm_of_the_clean_run(smollm2, ioi):
    ids, decomposition, _ = ioi
    final = run_with_cache(smollm2, ids, sites=("resid_post",)).final_stream[0, -1]
    with torch.inference_mode():
        normed = smollm2.parts.final_norm(final).float().numpy()
    np.testing.assert_allclose(decomposition.total, normed, rtol=1e-4, atol=1e-4)
    frozen = freeze_norm(smollm2.parts.final_norm, final)
    np.testing.assert_allclose(frozen.linear(final.float()).numpy(), normed, rtol=1e-5, atol=1e-5)


def test_dla_to_mary_sums_to_its_logit(smollm2, ioi):
    _, decomposition, mary = ioi
    terms = attribution_terms(smollm2, decomposition, mary)
    logit = float(decomposition.logits[mary])
    assert logit == pytest.approx(11.037, abs=0.01)
    assert terms["dla"].sum() == pytest.approx(logit, abs=1e-3)
    heads = head_attribution(smollm2, decomposition, mary)
    assert heads["dla"].sum() == pytest.approx(terms.loc[terms["kind"] == "head", "dla"].sum(), abs=1e-6)


def test_heads_with_the_largest_dla_to_mary_matter_when_ablated(smollm2, ioi):
    ids, decomposition, mary = ioi
    ranked = head_attribution(smollm2, decomposition, mary).sort_values("dla", ascending=False)
    assert list(ranked["head"].head(3)) == ["L29H1", "L23H0", "L28H1"]
    assert ranked["dla"].iloc[0] == pytest.approx(2.17, abs=0.02)
    top = [HeadIntervention(int(r.layer), int(r.head_index)) for r in ranked.head(3).itertuples()]
    negative = [HeadIntervention(int(r.layer), int(r.head_index)) for r in ranked.tail(3).itertuples()]
    edits = compile_edits([[], top, negative], smollm2.info.n_layers, smollm2.info.n_heads)
    probability = torch.softmax(run_with_cache(smollm2, ids, edits=edits).logits[:, -1].float(), -1)[:, mary]
    clean, without_top, without_negative = probability.tolist()
    assert clean == pytest.approx(0.923, abs=0.005)
    assert without_top < clean - 0.3  # measured 0.923 -> 0.449
    assert without_negative > clean  # control: removing the heads that push ' Mary' down raises it (0.996)


def test_a_heads_logit_lens(smollm2, ioi):
    _, decomposition, mary = ioi
    promoted, suppressed = head_logit_lens(smollm2, decomposition, 29, 1, k=5)
    assert promoted["token"].iloc[0] == " Mary"
    assert promoted["logit"].is_monotonic_decreasing and suppressed["logit"].is_monotonic_increasing
    assert suppressed["logit"].iloc[0] < 0 < promoted["logit"].iloc[-1]
    dla = head_attribution(smollm2, decomposition, mary).set_index("head").loc["L29H1", "dla"]
    assert promoted["logit"].iloc[0] == pytest.approx(dla, rel=1e-5)


def test_encoders_have_no_unembedding(minilm):
    ids = encode_text(minilm, "The cat sat on the mat.")[0]
    with pytest.raises(LogitAttributionUnsupported, match="no unembedding"):
        decompose(minilm, ids)


def test_bad_position(tiny_llama_handle):
    ids = encode_text(tiny_llama_handle, "abc")[0]
    with pytest.raises(ValueError, match="outside the text"):
        decompose(tiny_llama_handle, ids, 3)
