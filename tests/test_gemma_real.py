"""Gemma-3-270M, the third embedded model, on the model's own code: induction heads, ablation, attribution.

Gemma 3 mixes sliding-window and global layers, normalises each attention output before the residual add
and scales its embeddings; none of that is special-cased in the runtime, so these tests check the general
path on a real model.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.methods.ablation import ablate, clean_run, greedy_generate, greedy_generate_uncached
from analysis.methods.ablation_spec import preset_heads
from analysis.methods.census import PROBE_LENGTH, head_census
from analysis.methods.logit_attribution import attribution_terms, decompose
from analysis.methods.metrics import Metric
from analysis.datasets.probes import IOI_PROMPT, random_token_ids
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.trace import encode_text, run_trace

pytestmark = pytest.mark.slow
SECOND_REPEAT = Metric("loss", span=(PROBE_LENGTH + 1, 2 * PROBE_LENGTH))


@pytest.fixture(scope="module")
def census(gemma3):
    return head_census(gemma3)


def test_gemma_loads_editable_with_a_layer_restart(gemma3):
    info = gemma3.info
    assert (info.family, info.n_layers, info.n_heads, info.n_kv_heads) == ("gemma3_text", 18, 4, 1)
    assert info.supports_interventions and info.supports_restart and info.supports_head_writes
    assert run_trace(gemma3, IOI_PROMPT).top_next[0].token == " Mary"


def test_census_finds_induction_heads_on_the_probe(census):
    induction = census[census["label"] == "induction"]
    assert len(induction) >= 2
    assert census["induction"].max() > 0.5 > census["induction"].median()


def test_removing_induction_heads_hurts_the_repeat_more_than_random_heads(gemma3, census):
    info = gemma3.info
    probe = torch.tensor(np.tile(random_token_ids(gemma3.tokenizer, PROBE_LENGTH, seed=0), 2))[None]
    clean = clean_run(gemma3, probe)

    def rise(heads) -> float:
        edits = [HeadIntervention(layer, head) for layer, head in heads]
        return ablate(gemma3, probe, edits, clean=clean, metric=SECOND_REPEAT).metrics["loss"]

    induction = rise(preset_heads("induction", census, info.n_layers, info.n_heads, k=4))
    controls = [rise(preset_heads("random", None, info.n_layers, info.n_heads, k=4, seed=seed)) for seed in range(5)]
    assert induction > 1.0
    assert induction > 2 * max(controls)


def test_direct_logit_attribution_sums_to_the_logit(gemma3):
    ids = encode_text(gemma3, IOI_PROMPT)[0]
    mary = gemma3.tokenizer.encode(" Mary", add_special_tokens=False)[0]
    decomposition = decompose(gemma3, ids)
    terms = attribution_terms(gemma3, decomposition, mary)
    assert terms["dla"].sum() == pytest.approx(float(decomposition.logits[mary]), abs=2e-3)
    heads = terms[terms["kind"] == "head"]
    assert len(heads) == 72 and heads["dla"].abs().max() > 0.1


def test_generation_with_the_kv_cache_equals_full_forwards(gemma3):
    ids = encode_text(gemma3, IOI_PROMPT)[0]
    removed = [HeadIntervention(6, 1)]
    assert greedy_generate(gemma3, ids, removed, 4) == greedy_generate_uncached(gemma3, ids, removed, 4)
