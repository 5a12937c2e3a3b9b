"""The ablation mechanism: exact against hand computations, clean at scale 1, safe under concurrent calls."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from analysis.methods.ablation import ablate, clean_run, greedy_generate
from analysis.runtime.forward import run_with_cache
from analysis.runtime.interventions import EditTensors, HeadIntervention, compile_edits
from analysis.methods.metrics import Metric, token_loss
from analysis.datasets.probes import IOI_PROMPT
from analysis.runtime.trace import encode_text
from analysis.methods.reference import reference_means
from tests.oracles import head_replaced, model_output


def _ids(handle, text: str) -> torch.Tensor:
    return encode_text(handle, text)[0]


def _by_hand(handle, ids, layer: int, head: int, mean: bool) -> torch.Tensor:
    """Logits with one head replaced by a hook on its output projection: zero, or its reference mean."""
    value = reference_means(handle)[layer, head] if mean else 0.0
    with head_replaced(handle, layer, head, value):
        return model_output(handle, ids)


@pytest.mark.parametrize("mean", [False, True])
def test_ablation_matches_a_hand_computation(tiny_llama_handle, mean):
    handle = tiny_llama_handle
    ids = _ids(handle, "the cat sat on the mat")
    by_hand = _by_hand(handle, ids, 0, 3, mean)
    result = ablate(handle, ids, [HeadIntervention(0, 3, "mean" if mean else "zero", 0.0)])
    np.testing.assert_allclose(result.loss_after, token_loss(by_hand, ids)[0].numpy(), rtol=0, atol=1e-5)
    assert np.abs(result.loss_after - result.loss_before).max() > 1e-3  # the head mattered
    probabilities = torch.softmax(by_hand[0, -1], -1)
    np.testing.assert_allclose(result.top["after"], probabilities[result.top["token_id"].tolist()], atol=1e-6)


def test_scale_one_everywhere_reproduces_the_clean_logits_on_smollm2(smollm2):
    ids = _ids(smollm2, IOI_PROMPT)
    info = smollm2.info
    everything = [HeadIntervention(layer, head, "scale", 1.0) for layer in range(info.n_layers)
                  for head in range(info.n_heads)]
    clean = run_with_cache(smollm2, ids).logits
    assert torch.equal(run_with_cache(smollm2, ids, edits=compile_edits([everything], info.n_layers, info.n_heads)).logits,
                       clean)
    ones = torch.ones(1, info.n_layers, info.n_heads)  # force the edit onto every layer: z · 1 must be z
    forced = EditTensors(ones, torch.zeros_like(ones, dtype=torch.int8), frozenset(range(info.n_layers)))
    assert torch.equal(run_with_cache(smollm2, ids, edits=forced).logits, clean)
    result = ablate(smollm2, ids, everything)
    assert np.array_equal(result.loss_after, result.loss_before)
    assert result.metrics == {"loss": 0.0, "logprob": 0.0, "kl": 0.0}
    assert result.downstream.empty


def test_results_on_smollm2_ioi(smollm2):
    """Removing a layer-0 head changes the prediction, its downstream heads and only layers above it."""
    ids = _ids(smollm2, IOI_PROMPT)
    mary = smollm2.tokenizer.encode(" Mary")[0]
    result = ablate(smollm2, ids, [HeadIntervention(1, 5)], metric=Metric(target_id=mary))
    assert result.top["token"].iloc[0] == " Mary"
    assert result.metrics["logprob"] < -0.1 and result.metrics["kl"] > 0
    assert (result.downstream["layer"] > 1).all() and len(result.downstream) == 6
    first = result.downstream["head"].iloc[0]
    assert np.abs(result.patterns_after[first] - result.patterns_before[first]).sum() > 0


def test_concurrent_calls_with_different_selections_equal_serial_runs(smollm2):
    ids = _ids(smollm2, IOI_PROMPT)
    clean = clean_run(smollm2, ids)
    selections = [[], [HeadIntervention(1, 5)], [HeadIntervention(3, 0, "mean", 0.0)],
                  [HeadIntervention(8, h, "zero", 0.5) for h in range(9)], [HeadIntervention(20, 2, "scale", 2.0)],
                  [HeadIntervention(0, 0), HeadIntervention(29, 8, "mean", 0.0)]]
    serial = [ablate(smollm2, ids, selection, clean=clean) for selection in selections]
    with ThreadPoolExecutor(max_workers=3) as pool:
        concurrent = list(pool.map(lambda s: ablate(smollm2, ids, s, clean=clean), selections * 2))
    for index, result in enumerate(concurrent):
        expected = serial[index % len(selections)]
        np.testing.assert_allclose(result.loss_after, expected.loss_after, rtol=0, atol=1e-5)
        np.testing.assert_allclose(result.top["after"], expected.top["after"], rtol=0, atol=1e-6)
    assert len({round(r.metrics["loss"], 6) for r in serial}) == len(selections)  # all different


def test_greedy_generation_before_and_after(smollm2):
    ids = _ids(smollm2, IOI_PROMPT)
    clean = greedy_generate(smollm2, ids, [], 4)
    assert smollm2.tokenizer.decode(clean[:1]) == " Mary"
    scaled_one = greedy_generate(smollm2, ids, [HeadIntervention(1, 5, "zero", 1.0)], 4)
    assert scaled_one == clean
    broken = greedy_generate(smollm2, ids, [HeadIntervention(layer, h) for layer in (0, 1) for h in range(9)], 4)
    assert broken != clean


def test_encoder_ablation_reports_hidden_change_and_downstream(minilm):
    ids = _ids(minilm, "The cat sat on the mat.")
    result = ablate(minilm, ids, [HeadIntervention(0, 3)])
    assert result.loss_after is None and result.top.empty
    assert result.metrics["hidden_change"] > 0 and (result.downstream["layer"] >= 1).all()
