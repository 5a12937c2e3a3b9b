"""The lab's selection strings and presets: parsing, messages for bad specs, seeded random control."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.methods.ablation_spec import format_ablation, parse_ablation, preset_heads
from analysis.heads import HeadSpecError
from analysis.runtime.interventions import HeadIntervention


def test_parse_and_format_round_trip():
    selection = parse_ablation("L12H3:zero:0, L14H*:mean:0.5,L2H1:scale:2", 30, 9)
    assert [edit.label for edit in selection] == ["L12H3"] + [f"L14H{h}" for h in range(9)] + ["L2H1"]
    assert selection[1] == HeadIntervention(14, 0, "mean", 0.5)
    assert selection[-1] == HeadIntervention(2, 1, "scale", 2.0)
    assert parse_ablation(format_ablation(selection), 30, 9) == selection
    assert format_ablation(selection[:1]) == "L12H3:zero:0"


def test_items_without_settings_keep_the_current_ones_or_start_removed():
    current = [HeadIntervention(3, 1, "mean", 0.5)]
    assert parse_ablation("L3H1, L4H0", 30, 9, current) == [current[0], HeadIntervention(4, 0, "zero", 0.0)]
    assert parse_ablation("L3H1:zero", 30, 9, current) == [HeadIntervention(3, 1, "zero", 0.5)]


@pytest.mark.parametrize("spec, message", [
    ("L99H0", "layer 99 does not exist (layers 0–29)"),
    ("L1H9", "head 9 does not exist (heads 0–8)"),
    ("foo", "'foo' is not a head"),
    ("L1H1:bogus", "unknown mode 'bogus'"),
    ("L1H1:zero:5", "outside 0–2"),
    ("L1H1:zero:half", "'half' is not a number"),
    ("L1H1:zero:0:1", "write a head as L3H1"),
    ("L1H1:stream:-3", "'-3' is not a whole number of tokens from 0 to 4096"),
    ("L1H1:stream:1.5", "'1.5' is not a whole number"),
    ("L1H1:stream:5000", "'5000' is not a whole number"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(HeadSpecError, match=re.escape(message)):
        parse_ablation(spec, 30, 9)


def _census() -> pd.DataFrame:
    rows = [(layer, head) for layer in range(3) for head in range(2)]
    return pd.DataFrame({
        "head": [f"L{l}H{h}" for l, h in rows], "layer": [l for l, _ in rows], "head_index": [h for _, h in rows],
        "induction": [0.1, 0.9, 0.2, 0.8, 0.05, 0.7], "label": ["sink", "induction", "", "induction", "sink", ""],
    })


def test_presets_from_a_census_table():
    census = _census()
    assert preset_heads("induction", census, 3, 2, k=2) == [(0, 1), (1, 1)]
    assert preset_heads("sink", census, 3, 2) == [(0, 0), (2, 0)]
    assert preset_heads("layer", None, 3, 2, layer=2) == [(2, 0), (2, 1)]
    with pytest.raises(HeadSpecError, match="needs the head census"):
        preset_heads("induction", None, 3, 2)


def test_random_preset_is_seeded():
    first = preset_heads("random", None, 30, 9, k=5, seed=1)
    assert len(set(first)) == 5 and first == preset_heads("random", None, 30, 9, k=5, seed=1)
    assert first != preset_heads("random", None, 30, 9, k=5, seed=2)
    assert all(0 <= layer < 30 and 0 <= head < 9 for layer, head in first)


def test_streaming_heads_round_trip_with_their_window():
    selection = parse_ablation("L3H1:stream:8, L2H*:stream, L1H0:zero:0.5", 4, 3)
    assert selection[0] == HeadIntervention(3, 1, "stream", window=8)
    assert [edit.window for edit in selection[1:4]] == [64, 64, 64]  # a new streaming head keeps 64 recent tokens
    assert format_ablation(selection[:1]) == "L3H1:stream:8"
    assert parse_ablation(format_ablation(selection), 4, 3) == selection
    assert parse_ablation("L3H1", 4, 3, selection[:1]) == selection[:1]  # no number: the head keeps its window
    assert parse_ablation("L3H1:zero", 4, 3, selection[:1]) == [HeadIntervention(3, 1, "zero", 0.0)]
