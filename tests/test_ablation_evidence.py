"""Evidence on SmolLM2 that ablation measures what it should. Numbers are printed and saved for the report.

- Induction probe (the census probe: 32 random tokens written twice): removing the census' top-5
  induction heads raises the loss on the second repeat far more than removing 5 random heads (seeded).
- IOI prompt: which heads' removal most lowers the log-prob of " Mary".
- Rank correlation of |gradient| and |Δ loss| over all heads on the induction probe.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis.methods.ablation import ablate, clean_run
from analysis.methods.ablation_spec import preset_heads
from analysis.methods.census import PROBE_LENGTH, head_census
from analysis.methods.importance import ablation_importance, gradient_importance, rank_correlation
from analysis.runtime.interventions import HeadIntervention
from analysis.methods.metrics import Metric
from analysis.datasets.probes import IOI_PROMPT, random_token_ids
from analysis.runtime.trace import encode_text

REPEAT = PROBE_LENGTH
SECOND_REPEAT = Metric("loss", span=(REPEAT + 1, 2 * REPEAT))  # tokens an induction head can predict
RANDOM_SEEDS = range(10)


@pytest.fixture(scope="module")
def probe(smollm2) -> torch.Tensor:
    return torch.tensor(np.tile(random_token_ids(smollm2.tokenizer, REPEAT, seed=0), 2))[None]


@pytest.fixture(scope="module")
def evidence(artifacts_dir):
    numbers: dict = {}
    yield numbers
    (artifacts_dir / "ablation_evidence.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))


def _second_repeat_loss_rise(handle, probe, clean, heads) -> float:
    edits = [HeadIntervention(layer, head) for layer, head in heads]
    return ablate(handle, probe, edits, clean=clean, metric=SECOND_REPEAT).metrics["loss"]


def test_induction_heads_matter_more_than_random_heads(smollm2, probe, evidence):
    info = smollm2.info
    clean = clean_run(smollm2, probe)
    induction = preset_heads("induction", head_census(smollm2), info.n_layers, info.n_heads, k=5)
    induction_rise = _second_repeat_loss_rise(smollm2, probe, clean, induction)
    random_rises = [_second_repeat_loss_rise(smollm2, probe, clean,
                                             preset_heads("random", None, info.n_layers, info.n_heads, k=5, seed=seed))
                    for seed in RANDOM_SEEDS]
    evidence["induction_probe"] = {
        "clean_second_repeat_loss": float(clean.reference.token_loss[REPEAT:].mean()),
        "top5_induction_heads": [f"L{l}H{h}" for l, h in induction],
        "loss_rise_top5_induction": induction_rise,
        "loss_rise_5_random_seed0": random_rises[0],
        "loss_rise_5_random_mean_of_10_seeds": float(np.mean(random_rises)),
        "loss_rise_5_random_all_seeds": random_rises,
    }
    assert induction_rise > 1.0
    assert induction_rise > 3 * max(random_rises)  # more than any of the 10 random controls, by far
    assert induction_rise > 10 * np.mean(random_rises)


def test_heads_whose_removal_lowers_mary_in_ioi(smollm2, evidence):
    ids = encode_text(smollm2, IOI_PROMPT)[0]
    mary = smollm2.tokenizer.encode(" Mary", add_special_tokens=False)[0]
    frame = ablation_importance(smollm2, ids, Metric("logprob", target_id=mary)).sort_values("delta")
    evidence["ioi_mary_logprob_drop"] = {row.head: round(row.delta, 4) for row in frame.head(5).itertuples()}
    assert frame["delta"].iloc[0] < -0.2
    assert (frame["delta"].head(5) < 0).all()


def test_gradient_ranks_heads_like_ablation_on_the_induction_probe(smollm2, probe, evidence):
    gradient = gradient_importance(smollm2, probe, Metric("loss"))
    exact = ablation_importance(smollm2, probe, Metric("loss"))
    correlation = rank_correlation(gradient["importance"], exact["importance"])
    evidence["rank_correlation_gradient_vs_ablation_induction_probe"] = round(correlation, 3)
    assert correlation > 0.6
