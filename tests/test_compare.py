"""Comparing attention: Jensen–Shannon distance properties, token alignment, two models, streaming by layer."""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import pytest

from analysis.methods.compare import CompareError, align_tokens, compare_models, compare_texts, js_distance, \
    pattern_difference
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
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


def test_alignment_pairs_matching_and_substituted_tokens_and_leaves_out_insertions():
    first = ["When", " Mary", " and", " John", " went", " to", " the", " store"]
    second = ["When", " Mary", " and", " Bob", " went", " to", " the", " big", " store"]
    alignment = align_tokens(first, second)
    assert alignment.first.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # " John" ↔ " Bob": a substitution keeps its slot
    assert alignment.second.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]  # " big" has no partner
    assert alignment.left_out == (0, 1)


def test_difference_is_taken_over_aligned_rows_and_columns_renormalised():
    long, short = _random_rows(3, (6, 6)), _random_rows(4, (5, 5))
    alignment = align_tokens(list("abcxde"), list("abcde"))  # 'x' is inserted in the first text
    difference = pattern_difference(long, short, alignment)
    assert difference.shape == (5, 5)
    kept = long[np.ix_([0, 1, 2, 4, 5], [0, 1, 2, 4, 5])]
    np.testing.assert_allclose(difference, short - kept / kept.sum(-1, keepdims=True), atol=1e-6)


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
    before = js_distance(*(t.layer_patterns(24)[:, :9, :9] for t in (clean, corrupted)))
    np.testing.assert_allclose(before, 0.0, atol=2e-3)
    assert compare_texts(clean, clean)["js_distance"].max() == pytest.approx(0.0, abs=1e-6)


@dataclass
class _FewerHeads:
    """A trace seen through a "model" with heads 2 and 0 of each layer only (a different shape, same tokens)."""

    trace: object

    def __getattr__(self, name):
        return getattr(self.trace, name)

    n_heads = 2

    def layer_patterns(self, layer: int) -> np.ndarray:
        return self.trace.layer_patterns(layer)[[2, 0]]


def test_two_models_head_by_head_and_by_closest_head(tiny_llama_handle):
    from tests.tiny_models import tiny_llama

    first = run_trace(tiny_llama_handle, "the cat sat on the mat")
    second = run_trace(tiny_llama(seed=1), "the cat sat on the mat")
    ranked = compare_models(first, second)
    assert (ranked["match"] == ranked["head"]).all() and (ranked["js_distance"] > 0).all()
    matched = compare_models(first, _FewerHeads(first)).set_index("head")
    assert matched.loc["L1H2", "match"] == "L1H0" and matched.loc["L0H0", "match"] == "L0H1"
    assert matched.loc["L1H2", "js_distance"] == pytest.approx(0.0, abs=1e-6)


@dataclass
class _CountingTrace:
    """A trace that records, at each request for a layer's patterns, how many earlier layers' are still alive."""

    trace: object
    alive_at_request: list

    def __post_init__(self):
        self.handed_out = []

    def __getattr__(self, name):
        return getattr(self.trace, name)

    def layer_patterns(self, layer: int) -> np.ndarray:
        self.alive_at_request.append(sum(ref() is not None for ref in self.handed_out))
        patterns = np.array(self.trace.layer_patterns(layer))
        self.handed_out.append(weakref.ref(patterns))
        return patterns


def test_ranking_streams_one_layer_at_a_time_and_reports_progress(tiny_llama_handle):
    text = "the cat sat on the mat and the dog sat on the rug " * 6
    first, second = run_trace(tiny_llama_handle, text), run_trace(tiny_llama_handle, text.replace("dog", "big dog", 1))
    reported, alive = [], []
    ranked = compare_texts(_CountingTrace(first, alive), _CountingTrace(second, alive),
                           lambda done, total: reported.append((done, total)))
    assert reported == [(1, 2), (2, 2)]
    assert alive == [0, 0, 0, 0]  # no earlier layer's patterns are held when the next layer is computed
    assert len(ranked) == first.n_layers * first.n_heads and (ranked["js_distance"] >= 0).all()


def test_models_that_tokenise_differently_cannot_be_compared(tiny_llama_handle, tiny_bert_handle):
    first = run_trace(tiny_llama_handle, "the cat sat")
    second = run_trace(tiny_bert_handle, "the cat sat")
    with pytest.raises(CompareError, match="different tokens"):
        compare_models(first, second)
