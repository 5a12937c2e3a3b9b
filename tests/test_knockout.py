"""The knockout sweep (a lab selection on every row of a dataset) against plain torch hooks, and its summary."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from analysis.heads import HeadSpecError
from analysis.jobs.kinds import KINDS, compute_rows
from analysis.methods.ablation import ablate
from analysis.methods.aggregate import value_summary
from analysis.methods.knockout import knockout_selection
from analysis.methods.metrics import Metric
from analysis.runtime.trace import encode_text

TEXTS = ("the cat sat on the mat", "a dog ran far away from home", "we saw it")


def _o_proj(handle, layer: int) -> torch.nn.Module:
    return handle.model.model.layers[layer].self_attn.o_proj  # the LLaMA module itself, not the project's adapter


def _hooked_logits(handle, ids: torch.Tensor, replace: dict[tuple[int, int], torch.Tensor | None]) -> torch.Tensor:
    """The model's own forward with each (layer, head)'s slice of o_proj's input set to a value (None: zero)."""
    width = handle.model.config.hidden_size // handle.model.config.num_attention_heads
    hooks = []
    for (layer, head), value in replace.items():
        def pre_hook(module, args, head=head, value=value):
            inputs = args[0].clone()
            columns = slice(head * width, (head + 1) * width)
            inputs[..., columns] = 0.0 if value is None else value
            return (inputs, *args[1:])
        hooks.append(_o_proj(handle, layer).register_forward_pre_hook(pre_hook))
    try:
        with torch.inference_mode():
            return handle.model(ids, use_cache=False).logits[0].float()
    finally:
        for hook in hooks:
            hook.remove()


def _by_hand(clean: torch.Tensor, edited: torch.Tensor, ids: torch.Tensor, target: int) -> dict[str, float]:
    loss = [F.cross_entropy(logits[:-1], ids[0, 1:]).item() for logits in (clean, edited)]
    before, after = torch.log_softmax(clean[-1], -1), torch.log_softmax(edited[-1], -1)
    return {"loss_clean": loss[0], "loss_delta": loss[1] - loss[0], "logprob_delta": (after - before)[target].item(),
            "kl": (before.exp() * (before - after)).sum().item()}


def test_each_rows_knockout_equals_zeroing_the_heads_slice_of_o_proj(tiny_llama_handle):
    handle = tiny_llama_handle
    rows, errors = compute_rows(handle, KINDS["knockout"], [(i, {"text": t}) for i, t in enumerate(TEXTS)],
                                {"selection": "L1H2:zero:0,L0H3"}, 64)
    assert errors == [] and list(rows["row"]) == [0, 1, 2]
    for text, line in zip(TEXTS, rows.itertuples()):
        ids = encode_text(handle, text)[0]
        clean = _hooked_logits(handle, ids, {})
        expected = _by_hand(clean, _hooked_logits(handle, ids, {(1, 2): None, (0, 3): None}), ids,
                            int(clean[-1].argmax()))
        assert line.tokens == ids.shape[1] and line.target == handle.tokenizer.decode([int(clean[-1].argmax())])
        for name, value in expected.items():
            assert getattr(line, name) == pytest.approx(value, abs=1e-5), name
        assert line.loss_edited == pytest.approx(line.loss_clean + line.loss_delta)
        assert abs(line.loss_delta) > 1e-4  # the heads matter on this model: the check can fail


def test_a_pair_rows_resampled_head_reads_its_corrupted_prompt_and_its_target(tiny_llama_handle):
    handle = tiny_llama_handle
    row = {"clean": "the cat sat on", "corrupted": "the dog ran on", "target": "a", "distractor": "b"}
    rows, errors = compute_rows(handle, KINDS["knockout"], [(0, row)], {"selection": "L1H1:resample:0"}, 64)
    assert errors == []
    ids, source = encode_text(handle, row["clean"])[0], encode_text(handle, row["corrupted"])[0]
    captured = {}
    hook = _o_proj(handle, 1).register_forward_pre_hook(lambda module, args: captured.update(z=args[0].clone()))
    try:
        _hooked_logits(handle, source, {})
    finally:
        hook.remove()
    width = handle.model.config.hidden_size // handle.model.config.num_attention_heads
    edited = _hooked_logits(handle, ids, {(1, 1): captured["z"][..., width:2 * width]})
    target = handle.tokenizer.encode("a")[0]
    expected = _by_hand(_hooked_logits(handle, ids, {}), edited, ids, target)
    line = rows.iloc[0]
    assert line["target"] == handle.tokenizer.decode([target])
    for name, value in expected.items():
        assert line[name] == pytest.approx(value, abs=1e-5), name


def test_streaming_heads_sweep_like_the_lab_and_a_window_over_the_whole_text_changes_nothing(tiny_llama_handle):
    handle = tiny_llama_handle
    rows = [(i, {"text": t}) for i, t in enumerate(TEXTS)]
    short, _ = compute_rows(handle, KINDS["knockout"], rows, {"selection": "L0H*:stream:2"}, 64)
    wide, _ = compute_rows(handle, KINDS["knockout"], rows, {"selection": "L0H*:stream:64"}, 64)
    assert (short["loss_delta"].abs() > 1e-4).all()
    assert np.allclose(wide[["loss_delta", "logprob_delta", "kl"]], 0.0, atol=1e-6)
    ids = encode_text(handle, TEXTS[0])[0]
    lab = ablate(handle, ids, knockout_selection("L0H*:stream:2", 2, 4, False), metric=Metric())
    assert short.iloc[0]["loss_delta"] == pytest.approx(lab.metrics["loss"], abs=1e-6)
    assert short.iloc[0]["kl"] == pytest.approx(lab.metrics["kl"], abs=1e-6)


def test_the_mean_and_its_interval_over_three_rows_by_hand():
    values = [0.5, 1.25, 2.0]
    summary = value_summary(pd.DataFrame({"loss_delta": values, "kl": [0.1, np.nan, 0.3]}), ["loss_delta", "kl"])
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302653 * std / math.sqrt(3)  # t(0.975, 2) from a printed table
    line = summary.set_index("value").loc["loss_delta"]
    assert line["n"] == 3 and line["mean"] == pytest.approx(1.25) and line["std"] == pytest.approx(std)
    assert line["ci_low"] == pytest.approx(mean - half, rel=1e-5) and line["ci_high"] == pytest.approx(mean + half,
                                                                                                       rel=1e-5)
    kl = summary.set_index("value").loc["kl"]
    assert kl["n"] == 2 and kl["mean"] == pytest.approx(0.2)


@pytest.mark.parametrize("spec, has_pairs, expected", [
    ("L9H0", False, "layer 9 does not exist"),
    ("", False, "names no head"),
    ("L1H1:frob", False, "unknown mode 'frob'"),
    ("L1H1:resample:0", False, "sweep pair rows"),
])
def test_a_selection_that_cannot_be_swept_gets_a_message(spec, has_pairs, expected):
    with pytest.raises(HeadSpecError, match=expected):
        knockout_selection(spec, 2, 4, has_pairs)
    assert knockout_selection("L1H1:resample:0", 2, 4, True)[0].mode == "resample"
    in_order = knockout_selection("L1H2, L0H*", 2, 4, False)  # the same heads in any order spell one job
    assert [edit.label for edit in in_order] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H2"]


def test_a_bad_row_is_a_row_error_and_the_others_go_on(tiny_llama_handle):
    rows, errors = compute_rows(tiny_llama_handle, KINDS["knockout"], [(0, {"text": " "}), (1, {"text": TEXTS[0]})],
                                {"selection": "L1H2"}, 64)
    assert list(rows["row"]) == [1] and errors[0]["row"] == 0 and "empty" in errors[0]["message"]
    empty, all_failed = compute_rows(tiny_llama_handle, KINDS["knockout"], [(0, {"text": " "})], {"selection": "L1H2"},
                                     64)
    assert list(empty.columns) == ["row"] and len(all_failed) == 1
