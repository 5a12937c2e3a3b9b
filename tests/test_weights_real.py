"""SmolLM2's composition scores: the README's finding, with its one score checked against raw module weights."""
from __future__ import annotations

import pytest
import torch

from analysis.methods.weight_scores import composition_scores


def _raw_head(model, layer: int, head: int) -> dict[str, torch.Tensor]:
    """One head's matrices straight from the modules (input-norm gain folded, KV group of 3 query heads)."""
    block = model.model.layers[layer]
    attention, gain = block.self_attn, block.input_layernorm.weight.detach()
    group = head // 3
    rows = slice(64 * head, 64 * (head + 1))
    kv_rows = slice(64 * group, 64 * (group + 1))
    return {"Q": attention.q_proj.weight.detach()[rows] * gain, "K": attention.k_proj.weight.detach()[kv_rows] * gain,
            "V": attention.v_proj.weight.detach()[kv_rows] * gain, "O": attention.o_proj.weight.detach()[:, rows]}


def test_previous_token_head_is_the_strongest_key_partner_of_induction_head(smollm2):
    table = composition_scores(smollm2, "K")
    into = table[table["target"] == "L17H4"].sort_values("score", ascending=False)
    assert into["source"].iloc[0] == "L16H0"
    assert into["score"].iloc[0] > 3 * into["baseline"].iloc[0]
    a, b = _raw_head(smollm2.model, 16, 0), _raw_head(smollm2.model, 17, 4)
    ov = (a["O"] @ a["V"]).double()
    qk = (b["Q"].t() @ b["K"]).double()
    expected = (qk @ ov).norm() / (qk.norm() * ov.norm())
    assert into["score"].iloc[0] == pytest.approx(float(expected), rel=1e-4)
