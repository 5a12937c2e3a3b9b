"""Importance: prefix reuse equals the naive loop, gradients equal finite differences, Spearman's ρ."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.methods.ablation import ablate
from analysis.methods.importance import ablation_importance, ablation_importance_naive, gradient_importance, \
    rank_correlation
from analysis.runtime.interventions import HeadIntervention
from analysis.methods.metrics import Metric, MetricError
from analysis.runtime.trace import encode_text

METRICS = [Metric("loss"), Metric("loss", span=(3, 7)), Metric("logprob"), Metric("logprob", target_id=9),
           Metric("kl")]


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("metric", METRICS, ids=lambda m: f"{m.name}{m.span}{m.target_id}")
def test_prefix_reuse_equals_the_naive_loop_on_the_tiny_model(tiny_llama_handle, metric, mode):
    ids = encode_text(tiny_llama_handle, "the cat sat on the mat")[0]
    calls = []
    fast = ablation_importance(tiny_llama_handle, ids, metric, mode, progress=lambda d, t: calls.append((d, t)))
    naive = ablation_importance_naive(tiny_llama_handle, ids, metric, mode)
    np.testing.assert_allclose(fast["delta"], naive["delta"], rtol=0, atol=1e-6)
    assert fast["delta"].abs().max() > 1e-7  # exactly 0 if the ablations did nothing
    assert list(fast["head"][:5]) == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H0"]
    assert calls == [(1, 2), (2, 2)]


def test_prefix_reuse_equals_the_naive_loop_on_smollm2(smollm2):
    ids = encode_text(smollm2, "The cat sat on the mat because it")[0]
    fast = ablation_importance(smollm2, ids, Metric("loss"))
    naive = ablation_importance_naive(smollm2, ids, Metric("loss"))
    assert len(fast) == 270
    np.testing.assert_allclose(fast["delta"], naive["delta"], rtol=0, atol=1e-4)


def test_ablation_importance_agrees_with_the_lab(smollm2):
    ids = encode_text(smollm2, "The cat sat on the mat because it")[0]
    exact = ablation_importance(smollm2, ids, Metric("kl"), "mean").set_index("head")
    for layer, head in [(0, 2), (14, 4)]:
        lab = ablate(smollm2, ids, [HeadIntervention(layer, head, "mean", 0.0)])
        assert exact.loc[f"L{layer}H{head}", "delta"] == pytest.approx(lab.metrics["kl"], abs=1e-5)


@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("name", ["loss", "logprob"])
def test_gradient_equals_a_finite_difference(tiny_llama_handle, name, mode):
    """∂M/∂ξ at ξ = 1 against the central difference (M(1 + ε) − M(1 − ε)) / 2ε of edited runs."""
    handle = tiny_llama_handle
    ids = encode_text(handle, "the cat sat on the mat")[0]
    gradient = gradient_importance(handle, ids, Metric(name), mode).set_index("head")
    eps = 0.05
    for label in gradient["importance"].nlargest(3).index:
        layer, head = int(label[1]), int(label[3])
        up, down = (ablate(handle, ids, [HeadIntervention(layer, head, mode, 1 + sign * eps)]).metrics[name]
                    for sign in (1, -1))
        expected = (up - down) / (2 * eps)
        assert abs(expected) > 1e-4
        assert gradient.loc[label, "gradient"] == pytest.approx(expected, rel=0.05)
        assert gradient.loc[label, "importance"] == pytest.approx(abs(expected), rel=0.05)


def test_kl_gradient_estimate_is_second_order(tiny_llama_handle):
    ids = encode_text(tiny_llama_handle, "the cat sat on the mat")[0]
    frame = gradient_importance(tiny_llama_handle, ids, Metric("kl"))
    assert (frame["estimate"] >= 0).all() and frame["estimate"].max() > 0


def test_rank_correlation():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6·2/(4·15)


def test_encoders_are_refused_with_a_message(tiny_bert_handle):
    ids = torch.tensor([[2, 7, 9, 3]])
    with pytest.raises(MetricError, match="causal language model"):
        gradient_importance(tiny_bert_handle, ids)
