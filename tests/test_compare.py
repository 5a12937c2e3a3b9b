"""Comparing attention: Jensen–Shannon distance properties, text alignment, two models."""
from __future__ import annotations

import dataclasses

import math

import numpy as np
import pytest

from analysis.methods.probes import CORRUPTED_IOI_PROMPT
from analysis.methods.compare import CompareError, align, compare_models, compare_texts, js_distance, \
    pattern_difference
from analysis.methods.probes import IOI_PROMPT
from analysis.runtime.trace import run_trace


def _reference_js(p: list[float], q: list[float]) -> float:
    """Jensen–Shannon distance (base 2) of two distributions, term by term."""
    m = [(a + b) / 2 for a, b in zip(p, q)]
    kl_p = sum(a * math.log2(a / c) for a, c in zip(p, m) if a > 0)
    kl_q = sum(b * math.log2(b / c) for b, c in zip(q, m) if b > 0)
    return math.sqrt((kl_p + kl_q) / 2)


def _random_rows(seed: int, shape=(50, 12)) -> np.ndarray:
    rows = np.random.default_rng(seed).random(shape) ** 3
    return rows / rows.sum(-1, keepdims=True)


def test_js_distance_is_a_bounded_symmetric_metric():
    p, q, r = _random_rows(0), _random_rows(1), _random_rows(2)
    np.testing.assert_allclose(js_distance(p, p), 0.0, atol=1e-7)
    np.testing.assert_allclose(js_distance(p, q), js_distance(q, p))
    assert ((js_distance(p, q) > 0) & (js_distance(p, q) <= 1)).all()
    assert (js_distance(p, r) <= js_distance(p, q) + js_distance(q, r) + 1e-12).all()  # triangle inequality
    np.testing.assert_allclose(js_distance([1, 0, 0], [0, 0.5, 0.5]), 1.0)  # disjoint supports
    np.testing.assert_allclose(js_distance(p, q), [_reference_js(list(a), list(b)) for a, b in zip(p, q)], rtol=1e-6)


def test_align_cuts_to_the_shorter_text_and_renormalises():
    long, short = _random_rows(3, (2, 6, 6)), _random_rows(4, (2, 4, 4))
    a, b = align(long, short)
    assert a.shape == b.shape == (2, 4, 4)
    np.testing.assert_allclose(a.sum(-1), 1.0)
    assert pattern_difference(long[0], short[0]).shape == (4, 4)


def test_clean_and_corrupted_ioi(smollm2):
    clean, corrupted = run_trace(smollm2, IOI_PROMPT), run_trace(smollm2, CORRUPTED_IOI_PROMPT)
    assert clean.n_tokens == corrupted.n_tokens == 14
    changed = [i for i, (a, b) in enumerate(zip(clean.tokens, corrupted.tokens)) if a != b]
    assert changed == [9]  # ' John' -> ' Mary'
    ranked = compare_texts(clean, corrupted)
    assert list(ranked.columns) == ["head", "layer", "head_index", "js_distance"]
    assert len(ranked) == 270 and ranked["js_distance"].is_monotonic_decreasing
    assert ranked["head"].iloc[0] == "L24H4" and ranked["js_distance"].iloc[0] > 0.1
    # causal: queries before the changed token see identical prefixes, so their rows are identical
    before = js_distance(*(t.attentions[:, :, :9, :9] for t in (clean, corrupted)))
    np.testing.assert_allclose(before, 0.0, atol=2e-3)
    assert compare_texts(clean, clean)["js_distance"].max() == pytest.approx(0.0, abs=1e-6)


def test_two_models_head_by_head_and_by_closest_head(tiny_llama_handle):
    from tests.tiny_models import tiny_llama

    first = run_trace(tiny_llama_handle, "the cat sat on the mat")
    second = run_trace(tiny_llama(seed=1), "the cat sat on the mat")
    ranked = compare_models(first, second)
    assert (ranked["match"] == ranked["head"]).all() and (ranked["js_distance"] > 0).all()
    fewer = dataclasses.replace(first, attentions=first.attentions[:, [2, 0]])  # a "model" with 2 heads per layer
    matched = compare_models(first, fewer).set_index("head")
    assert matched.loc["L1H2", "match"] == "L1H0" and matched.loc["L0H0", "match"] == "L0H1"
    assert matched.loc["L1H2", "js_distance"] == pytest.approx(0.0, abs=1e-6)


def test_models_that_tokenise_differently_cannot_be_compared(tiny_llama_handle, tiny_bert_handle):
    first = run_trace(tiny_llama_handle, "the cat sat")
    second = run_trace(tiny_bert_handle, "the cat sat")
    with pytest.raises(CompareError, match="different tokens"):
        compare_models(first, second)
