"""Head scores on hand-set attention matrices, where the right answer is known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.methods.census import LabelThresholds, label_heads
from analysis.methods.head_scores import (class_mass, duplicate_token_score, first_token_score, induction_score,
                                  local_mass, mean_distance, normalised_entropy, offset_score)


def one_hot_rows(targets: list[int]) -> np.ndarray:
    """A causal pattern whose query i puts all its weight on key targets[i]."""
    pattern = np.zeros((len(targets), len(targets)))
    pattern[np.arange(len(targets)), targets] = 1.0
    return pattern


def test_previous_token_head():
    pattern = one_hot_rows([0, 0, 1, 2, 3])
    assert offset_score(pattern, 1) == pytest.approx(1.0)
    assert offset_score(pattern, 0) == pytest.approx(1 / 5)  # only query 0, which can see nothing else
    assert first_token_score(pattern) == pytest.approx(0.25)  # only query 1 looks at key 0
    assert mean_distance(pattern) == pytest.approx(4 / 5)  # distance 1 for 4 of 5 queries
    assert local_mass(pattern, window=0) == pytest.approx(1 / 5)


def test_sink_head_and_uniform_head():
    sink = one_hot_rows([0, 0, 0, 0])
    assert first_token_score(sink) == pytest.approx(1.0)
    assert normalised_entropy(sink, causal=True) == pytest.approx(0.0)
    uniform = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    assert normalised_entropy(uniform, causal=True) == pytest.approx(1.0)
    assert first_token_score(uniform) == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)


def test_induction_and_duplicate_scores_on_a_repeated_sequence():
    tokens = np.array([7, 8, 9, 7, 8, 9])  # L = 3, written twice
    induction = one_hot_rows([0, 0, 0, 1, 2, 3])  # second repeat: i → i − L + 1
    duplicate = one_hot_rows([0, 0, 0, 0, 1, 2])  # second repeat: i → i − L
    assert induction_score(induction, tokens) == pytest.approx(1.0)
    assert duplicate_token_score(induction, tokens) == pytest.approx(0.0)
    assert duplicate_token_score(duplicate, tokens) == pytest.approx(1.0)
    assert induction_score(duplicate, tokens) == pytest.approx(0.0)
    half = 0.5 * induction + 0.5 * duplicate
    assert induction_score(half, tokens) == pytest.approx(0.5)


def test_induction_is_undefined_without_repeats_and_batched_over_heads():
    pattern = one_hot_rows([0, 0, 1, 2])
    assert np.isnan(induction_score(pattern, np.array([1, 2, 3, 4])))
    stacked = np.stack([[pattern, one_hot_rows([0, 1, 2, 3])]])  # [layers=1, heads=2, q, k]
    np.testing.assert_allclose(offset_score(stacked, 1), [[1.0, 0.0]])
    np.testing.assert_allclose(offset_score(stacked, 0), [[0.25, 1.0]])


def test_class_mass_on_a_bidirectional_pattern():
    pattern = np.full((4, 4), 0.25)
    pattern[:, 3] = 0.4
    pattern[:, :3] = 0.2  # [CLS] a b [SEP]: 0.2 each, 0.4 on [SEP]
    sep = np.array([False, False, False, True])
    assert class_mass(pattern, sep) == pytest.approx(0.4)
    assert class_mass(pattern, np.array([True, False, False, False])) == pytest.approx(0.2)
    assert np.isnan(class_mass(pattern, np.zeros(4, dtype=bool)))
    assert normalised_entropy(pattern, causal=False) < 1.0


def test_labels_follow_the_thresholds():
    import pandas as pd

    row = {"head": "L0H0", "layer": 0, "head_index": 0, "induction": 0.4, "duplicate_token": 0.0,
           "induction_text": np.nan, "duplicate_text": np.nan, "previous_token": 0.0, "self": 0.0,
           "first_token": 0.95, "mean_distance": 3.0, "local_mass": 0.1, "entropy": 0.1, "cls_mass": np.nan,
           "sep_mass": np.nan, "punct_mass": 0.0, "output_norm": 0.2, "copying": np.nan, "maps_copying": np.nan,
           "successor": np.nan}
    frame = pd.DataFrame([row])
    assert label_heads(frame, LabelThresholds())["label"][0] == "induction"
    assert label_heads(frame, LabelThresholds(induction=0.5))["label"][0] == "dormant"
    assert label_heads(frame, LabelThresholds(induction=0.5, dormant_output_norm=0.1))["label"][0] == "sink"
    assert label_heads(frame, LabelThresholds(induction=0.5, dormant_first_token=1.0, sink=1.0))["label"][0] == ""
