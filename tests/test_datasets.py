"""Datasets: uploads with a message per bad row, the built-in generators, and per-head means with 95 % intervals."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.datasets import Dataset, DatasetError, PairRow, from_rows
from analysis.datasets import parsing
from analysis.datasets.generators import IOI_TEMPLATES, NAMES, generate_dataset, ioi_dataset, natural_text_dataset, \
    repeated_tokens_dataset
from analysis.datasets.parsing import dataset_jsonl, parse_dataset
from analysis.methods.aggregate import head_summary, head_values, t_quantile, value_grid
from tests.tiny_models import RoundTripCharTokenizer


def _problems(parsed) -> list[str]:
    return [str(problem) for problem in parsed.problems]


def test_csv_keeps_good_rows_and_names_each_bad_one():
    data = ('text,source\n"The cat sat.",a\n,b\n"A ""quoted"" line, with a comma",c\nonly-one-field\n\n'
            f'{"x" * (parsing.MAX_ROW_CHARS + 1)},d\n"Last one.",e\n').encode()
    parsed = parse_dataset("rows.csv", data)
    assert parsed.dataset.texts == ("The cat sat.", 'A "quoted" line, with a comma', "Last one.")
    assert not parsed.dataset.has_pairs and parsed.dataset.name == "rows.csv"
    assert _problems(parsed) == [
        "row 2 (line 3): 'text' is empty",
        "row 4 (line 5): has 1 field; the header has 2",
        f"row 5 (line 7): 'text' has {parsing.MAX_ROW_CHARS + 1:,} characters (limit {parsing.MAX_ROW_CHARS:,})",
    ]


def test_csv_pair_columns_make_patching_rows():
    data = ("Clean,corrupted,target,distractor\n"
            "When Mary and John left,When Mary and John left, Mary, John\n"
            "a,b,,d\n").encode("utf-8-sig")
    parsed = parse_dataset("pairs.CSV", data)
    assert parsed.dataset.pairs == (PairRow("When Mary and John left", "When Mary and John left", " Mary", " John"),)
    assert _problems(parsed) == ["row 2 (line 3): 'target' is empty"]


@pytest.mark.parametrize("header, expected", [
    ("clean,corrupted,target", "missing: distractor"),
    ("prompt,label", "needs a 'text' column"),
])
def test_a_csv_without_usable_columns_is_refused(header, expected):
    with pytest.raises(DatasetError, match=expected):
        parse_dataset("x.csv", f"{header}\na,b,c\n".encode())


def test_jsonl_names_the_line_and_the_problem():
    lines = ['{"text": "First."}', '{"text": "Second.", "extra": 1}', "", '{"text": 3}', '["text"]',
             '{"text": "unterminated', '{"body": "x"}', '{"text": "Last."}']
    parsed = parse_dataset("rows.jsonl", "\n".join(lines).encode())
    assert parsed.dataset.texts == ("First.", "Second.", "Last.")
    assert _problems(parsed) == [
        "row 3 (line 4): 'text' is a int, not a string",
        'row 4 (line 5): is a JSON list, not an object like {"text": "..."}',
        "row 5 (line 6): not valid JSON (Unterminated string starting at at column 10)",
        "row 6 (line 7): 'text' is missing",
    ]


@pytest.mark.parametrize("name, data, expected", [
    ("rows.txt", b"text\nx\n", "not a .csv or .jsonl file"),
    ("rows.csv", b"text\n\xff\xfe\n", "not UTF-8"),
    ("rows.csv", b"", "empty"),
    ("rows.csv", b"text\n,\n\n", "No usable row"),
    ("rows.jsonl", b"nonsense\n", "No usable row in 'rows.jsonl'. First problem: row 1 (line 1): not valid JSON"),
])
def test_unusable_files_get_one_clear_message(name, data, expected):
    with pytest.raises(DatasetError, match=re.escape(expected)):
        parse_dataset(name, data)


def test_size_and_row_limits(monkeypatch):
    with pytest.raises(DatasetError, match="limit is 5,000,000"):
        parse_dataset("big.csv", b"text\n" + b"x" * parsing.MAX_UPLOAD_BYTES)
    monkeypatch.setattr(parsing, "MAX_ROWS", 3)
    parsed = parse_dataset("many.jsonl", "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(5)).encode())
    assert len(parsed.dataset) == 3
    assert _problems(parsed) == ["row 4 (line 4): this and the next 1 rows were left out: a dataset holds at most 3 "
                                 "rows"]


def test_jsonl_round_trip_and_dict_form():
    dataset = ioi_dataset(5, seed=1)
    assert parse_dataset("d.jsonl", dataset_jsonl(dataset).encode()).dataset.pairs == dataset.pairs
    assert Dataset.from_dict(dataset.to_dict()) == dataset
    assert from_rows("t", [{"text": "a"}, {"text": "b"}]).texts == ("a", "b")


def test_ioi_pairs_are_seeded_distinct_and_swap_only_the_giver():
    first, again, other = ioi_dataset(40, seed=3), ioi_dataset(40, seed=3), ioi_dataset(40, seed=4)
    assert first == again and first.texts != other.texts
    assert len(set(first.texts)) == 40 and first.has_pairs
    for pair in first.pairs:
        indirect_object, subject = pair.target.strip(), pair.distractor.strip()
        assert indirect_object in NAMES and subject in NAMES and indirect_object != subject
        assert pair.clean.replace(f"{subject} ", f"{indirect_object} ", 2) != pair.clean
        assert pair.clean.count(subject) == 2 and pair.corrupted.count(indirect_object) == 2
    assert sum(pair.clean.startswith("When") for pair in ioi_dataset(300).pairs) < 300  # several templates
    with pytest.raises(DatasetError, match="between 1 and"):
        ioi_dataset(len(IOI_TEMPLATES) * len(NAMES) * (len(NAMES) - 1) + 1)


def test_probe_and_natural_text_generators():
    tokenizer = RoundTripCharTokenizer()
    probes = repeated_tokens_dataset(tokenizer, 3, length=6, first_seed=5)
    assert len(probes) == 3 and len(set(probes.texts)) == 3
    for text in probes.texts:
        assert text[: len(text) // 2] * 2 == text
    assert generate_dataset("repeat", 3, 5, 6, tokenizer) == probes
    natural = natural_text_dataset()
    assert len(natural) >= 40 and len(set(natural.texts)) == len(natural)
    assert generate_dataset("natural", 10_000).texts == natural.texts  # capped at the sample's size
    with pytest.raises(DatasetError, match="name the model"):
        generate_dataset("repeat", 3)
    with pytest.raises(DatasetError, match="Unknown generator"):
        generate_dataset("wikipedia", 3)


def test_ioi_prompts_tokenise_alike_in_smollm2(smollm2):
    """Every name is one token, and clean and corrupted prompts have the same token count (needed for patching)."""
    tokenizer = smollm2.tokenizer
    assert all(len(tokenizer.encode(f" {name}", add_special_tokens=False)) == 1 for name in NAMES)
    for pair in ioi_dataset(200).pairs:
        assert len(tokenizer.encode(pair.clean)) == len(tokenizer.encode(pair.corrupted))


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (9, 2.2622), (29, 2.0452), (99, 1.9842),
                                          (5000, 1.9600)])
def test_t_quantiles_match_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)


def _long_table(values: np.ndarray) -> pd.DataFrame:
    """Rows × heads values [rows, 2 layers, 2 heads] as a sweep's long table."""
    rows, layers, heads = values.shape
    index = np.indices(values.shape).reshape(3, -1)
    return pd.DataFrame({"row": index[0], "head": [f"L{l}H{h}" for l, h in zip(index[1], index[2])],
                         "layer": index[1], "head_index": index[2], "score": values.reshape(-1)})


def test_head_summary_mean_and_interval():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 2, 2))
    values[3, 1, 0] = np.nan  # undefined on one row: left out of that head's n
    summary = head_summary(_long_table(values), "score")
    assert list(summary["head"]) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    column = values[:, 0, 1]
    half = 2.2010 * column.std(ddof=1) / np.sqrt(12)  # t(0.975, 11)
    line = summary.iloc[1]
    assert line["n"] == 12 and line["mean"] == pytest.approx(column.mean())
    assert line["ci_low"] == pytest.approx(column.mean() - half, rel=1e-4)
    assert line["ci_high"] == pytest.approx(column.mean() + half, rel=1e-4)
    assert summary.iloc[2]["n"] == 11 and summary.iloc[2]["mean"] == pytest.approx(np.nanmean(values[:, 1, 0]))
    one_row = head_summary(_long_table(values[:1]), "score")
    assert one_row["ci_half"].isna().all() and one_row["mean"].notna().all()
    assert value_grid(summary, "mean", 2, 2)[1, 1] == pytest.approx(values[:, 1, 1].mean())
    assert list(head_values(_long_table(values), "L1H0", "score")["row"]) == [r for r in range(12) if r != 3]


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """400 heads, each with 8 rows drawn around 0.3: about 95 % of their intervals contain 0.3."""
    summary = head_summary(_long_table(np.random.default_rng(1).normal(loc=0.3, size=(8, 1, 400))), "score")
    covered = ((summary["ci_low"] <= 0.3) & (0.3 <= summary["ci_high"])).mean()
    assert 0.92 <= covered <= 0.98
