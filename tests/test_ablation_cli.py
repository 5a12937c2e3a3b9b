"""The importance and ablate commands of ``python -m analysis``."""
from __future__ import annotations

import pandas as pd

from analysis.cli.main import main


def test_importance_writes_one_row_per_head(smollm2, tmp_path, capsys):
    out = tmp_path / "imp.csv"
    assert main(["importance", "--metric", "logprob", "--target", " Mary", "--method", "gradient",
                 "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 270 and list(frame.columns[:3]) == ["head", "layer", "head_index"]
    assert frame["head"].iloc[13] == "L1H4" and (frame["gradient_importance"] >= 0).all()
    assert "wrote 270 heads" in capsys.readouterr().out


def test_ablate_prints_before_and_after(smollm2, capsys):
    assert main(["ablate", "--heads", "L1H5,L3H*:mean:0.5,L2H0:stream:4", "--gen-tokens", "2"]) == 0
    printed = capsys.readouterr().out
    assert "11 heads: L1H5 zero ×0, L3H0 mean ×0.5" in printed and "L3H8 mean ×0.5, L2H0 stream 4" in printed
    assert "␣Mary" in printed and "before: ' Mary" in printed and "downstream heads" in printed


def test_bad_head_spec_exits_with_a_message(smollm2, capsys):
    assert main(["ablate", "--heads", "L99H0"]) == 2
    assert "L99H0: layer 99 does not exist (layers 0–29)" in capsys.readouterr().err
