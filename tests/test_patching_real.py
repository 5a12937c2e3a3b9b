"""Activation patching on the real models: IOI on SmolLM2 and Gemma-3, induction, the CLI."""
from __future__ import annotations

import numpy as np

from analysis.cli.main import main
from analysis.methods.importance import rank_correlation
from analysis.methods.patching import PatchingMetric, attribution_patching, head_patching, head_patching_naive
from analysis.methods.patching_runs import Patch, patched_values, prepare_runs
from analysis.datasets.probes import patching_pair
from analysis.runtime.trace import encode_text


def _inputs(handle, name: str):
    pair = patching_pair(name, handle.tokenizer)
    clean, corrupted = (encode_text(handle, text)[0] for text in (pair.clean, pair.corrupted))
    token = lambda text: handle.tokenizer.encode(text, add_special_tokens=False)[0]  # noqa: E731
    return clean, corrupted, PatchingMetric("logit_diff", token(pair.target), token(pair.distractor))


def test_ioi_on_smollm2_finds_the_known_heads_and_the_estimate_ranks_them(smollm2):
    clean, corrupted, metric = _inputs(smollm2, "ioi")
    exact = head_patching(smollm2, clean, corrupted, metric).set_index("head")["effect"]
    assert exact.idxmax() == "L23H3" and exact["L23H3"] > 0.4
    assert {"L29H1", "L20H0"} <= set(exact.nlargest(5).index)  # L29H1 also has the largest DLA to ' Mary'
    assert exact["L24H4"] < -0.1  # pushes ' Mary' down, as in direct logit attribution
    estimate = attribution_patching(smollm2, clean, corrupted, metric).set_index("head")["effect"]
    assert rank_correlation(estimate, exact) > 0.8 and estimate.idxmax() == "L23H3"
    runs = prepare_runs(smollm2, clean, corrupted, metric)
    restored = runs.baseline.normalise(patched_values(smollm2, runs, [Patch(residual_layer=0), Patch()]))
    np.testing.assert_allclose(restored, [1.0, 0.0], atol=1e-4)


def test_fast_grid_equals_the_naive_loop_on_gemma(gemma3):
    clean, corrupted, metric = _inputs(gemma3, "ioi")
    fast = head_patching(gemma3, clean, corrupted, metric, "noise")
    naive = head_patching_naive(gemma3, clean, corrupted, metric, "noise")
    np.testing.assert_allclose(fast["effect"], naive["effect"], atol=1e-4)
    assert fast["effect"].min() < 0.9  # some head is necessary


def test_induction_pair_is_carried_by_late_heads(smollm2):
    clean, corrupted, metric = _inputs(smollm2, "induction")
    exact = head_patching(smollm2, clean, corrupted, metric)
    top = exact.nlargest(5, "effect")
    assert top["layer"].min() >= 10 and top["effect"].iloc[0] > 0.1


def test_cli_patch_prints_heads_and_writes_a_csv(smollm2, tmp_path, capsys):
    out = tmp_path / "residual.csv"
    assert main(["patch", "--pair", "factual", "--analysis", "residual", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Colosseum" in printed and f"wrote 270 rows to {out}" in printed  # 30 layers × 9 positions
    assert main(["patch", "--analysis", "positions", "--heads", "L99H0"]) == 2
    assert "layer 99 does not exist" in capsys.readouterr().err
    assert main(["patch", "--model", "minilm-l6"]) == 2
    assert "needs a causal language model" in capsys.readouterr().err
