"""The census on the embedded models: the facts the page's summary and help text state."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.methods.census import SCORE_COLUMNS, census_summary, head_census
from analysis.cli.main import main as cli_main
from analysis.datasets.probes import EXAMPLE_TEXTS, IOI_PROMPT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_census(smollm2) -> pd.DataFrame:
    return head_census(smollm2, IOI_PROMPT)


def test_one_row_per_head_with_every_score(smollm2_census, smollm2):
    info = smollm2.info
    assert len(smollm2_census) == info.n_layers * info.n_heads
    assert list(smollm2_census.columns) == ["head", "layer", "head_index", *SCORE_COLUMNS, "label"]
    assert smollm2_census["head"].iloc[10] == "L1H1"
    assert smollm2_census[["cls_mass", "sep_mass"]].isna().all().all()  # a decoder has neither


def test_smollm2_has_strong_induction_heads(smollm2_census):
    induction = smollm2_census["induction"]
    # measured: best 0.909 (L18H6), median 0.0068 over 270 heads
    assert induction.max() > 0.8 and induction.median() < 0.02
    assert induction.max() > 40 * induction.median()
    best = smollm2_census.nlargest(5, "induction")
    assert set(best["layer"]) <= set(range(15, 25))  # induction heads sit in the middle-to-late layers
    assert (smollm2_census["label"] == "induction").sum() >= 5


def test_smollm2_later_layers_park_on_the_first_token(smollm2_census):
    by_half = smollm2_census.groupby(smollm2_census["layer"] >= 15)["first_token"].mean()
    # measured on the IOI prompt: 0.69 in layers 15–29, 0.41 in layers 0–14
    assert by_half[True] > 0.6 and by_half[True] > by_half[False] + 0.15


def test_smollm2_has_previous_token_heads(smollm2_census):
    assert smollm2_census["previous_token"].max() > 0.7  # measured: 0.80, L16H0
    assert (smollm2_census["label"] == "previous-token").any()
    assert "induction head" in census_summary(smollm2_census, "smollm2-135m")


@pytest.mark.parametrize("text", [IOI_PROMPT, EXAMPLE_TEXTS["Paragraph"],
                                  "The cat sat on the mat. It purred, and then it slept."])
def test_minilm_parks_attention_on_cls_not_sep(minilm, text):
    census = head_census(minilm, text)
    # measured on these texts: 21–46% of heads put over half their mass on [CLS]; [SEP] never above 0.17
    assert (census["cls_mass"] > 0.5).mean() > 0.15
    assert census["sep_mass"].max() < 0.25
    assert census["cls_mass"].median() > 2 * census["sep_mass"].max()
    assert (census["label"] == "[CLS]").sum() > (census["label"] == "[SEP]").sum()


def test_probe_is_seeded(smollm2):
    first = head_census(smollm2, None, probe_length=12, seed=3)
    again = head_census(smollm2, None, probe_length=12, seed=3)
    other = head_census(smollm2, None, probe_length=12, seed=4)
    np.testing.assert_array_equal(first["induction"], again["induction"])
    assert not np.allclose(first["induction"], other["induction"])


def test_cli_writes_the_census(tmp_path, smollm2):
    out = tmp_path / "census.csv"
    assert cli_main(["census", "--model", "smollm2-135m", "--probe", "induction", "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert len(written) == 270 and written["induction"].max() > 0.8
