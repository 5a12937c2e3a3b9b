"""Per-head weights and the scores read from them, on tiny random models of every family.

Oracles that share no code with the adapter: the query, key and value the model's own code hands to the
attention function (recorded by a plain function registered with transformers' attention interface; at
position 0 rotary is the identity), the layer input normalised by hand; eigenvalues of the explicitly built
vocabulary × vocabulary OV matrix; composition scores from explicitly built d_model × d_model matrices.
"""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from analysis.methods.census import LabelThresholds, label_heads
from analysis.methods.composition import composition_table, random_baseline
from analysis.methods.ov_circuits import Circuits
from analysis.runtime.loading import make_handle
from analysis.runtime.weights import norm_gain_and_bias, read_head_weights
from tests.family_models import FAMILIES, build_family

pytestmark = pytest.mark.usefixtures("one_thread")

BY_NAME = {family.name: family for family in FAMILIES}
LAYER_NORM_FAMILIES = {"gpt2", "gpt_neox", "olmo"}  # input norms centre the stream; the others only rescale it
HEAD_NORM_FAMILIES = {"qwen3", "gemma3"}  # per-head query/key norms: only the direction of q and k is linear
_RECORDED: dict[int, dict[str, torch.Tensor]] = {}


def _recording_attention(module, query, key, value, attention_mask, **kwargs):
    _RECORDED[id(module)] = {"query": query.detach(), "key": key.detach(), "value": value.detach()}
    eager = sys.modules[type(module).__module__].eager_attention_forward
    return eager(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("record_qkv", _recording_attention)
AttentionMaskInterface.register("record_qkv", ALL_MASK_ATTENTION_FUNCTIONS["eager"])


def _unit_stream(hidden: torch.Tensor, centred: bool, eps: float) -> torch.Tensor:
    if centred:
        hidden = hidden - hidden.mean(-1, keepdim=True)
    return hidden / hidden.pow(2).mean(-1, keepdim=True).add(eps).sqrt()


@pytest.mark.parametrize("name", [family.name for family in FAMILIES])
def test_weights_reproduce_the_models_own_query_key_value(name):
    family = BY_NAME[name]
    model, tokenizer = build_family(family)
    model.set_attn_implementation("record_qkv")
    ids = tokenizer("the cat sat on the mat.", return_tensors="pt").input_ids
    _RECORDED.clear()  # ids of freed modules may be reused: keep only this model's calls, in order
    with torch.inference_mode():
        hidden_states = model(ids, output_hidden_states=True).hidden_states
    order = list(_RECORDED)
    handle = make_handle(name, model, tokenizer, "random", "cpu")
    weights = read_head_weights(handle)
    n_kv = handle.info.n_kv_heads
    for layer in range(weights.n_layers):
        recorded = _RECORDED[order[layer]]
        stream = hidden_states[layer][0]
        eps = next((getattr(model.config, key) for key in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon")
                   if hasattr(model.config, key)), 1e-5)  # OLMo's parameter-free LayerNorm: 1e-5
        unit = stream if not family.causal else _unit_stream(stream, name in LAYER_NORM_FAMILIES, eps)
        for head in range(weights.n_heads):
            group = head // (weights.n_heads // n_kv)
            value = unit @ weights.W_V[layer, head].t() + weights.b_V[layer, head]
            torch.testing.assert_close(value, recorded["value"][0, group], atol=1e-4, rtol=1e-4)
            for part, w, b, h in (("query", weights.W_Q, weights.b_Q, head), ("key", weights.W_K, weights.b_K, group)):
                mine = unit[0] @ w[layer, head].t() + b[layer, head]
                theirs = recorded[part][0, h, 0]
                if name in HEAD_NORM_FAMILIES:  # equal up to the per-head 1/RMS scale left out
                    ratio = theirs / mine
                    torch.testing.assert_close(ratio, ratio.mean().expand_as(ratio), atol=1e-3, rtol=1e-3)
                    assert ratio.mean() > 0
                else:
                    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_grouped_query_heads_share_their_groups_key_and_value():
    model, tokenizer = build_family(BY_NAME["llama"])
    handle = make_handle("llama", model, tokenizer, "random", "cpu")
    weights = read_head_weights(handle)
    assert weights.kv_group == (0, 0, 1, 1)
    k_proj = model.model.layers[1].self_attn.k_proj.weight.view(2, 8, 32)  # 2 KV heads of head_dim 8
    gain = model.model.layers[1].input_layernorm.weight
    for head in range(4):
        torch.testing.assert_close(weights.W_K[1, head], k_proj[head // 2] * gain)
    assert not torch.equal(weights.W_V[1, 0], weights.W_V[1, 2])
    torch.testing.assert_close(weights.W_V[1, 0], weights.W_V[1, 1])


def test_norm_gain_is_read_from_the_module_itself():
    model, _ = build_family(BY_NAME["gemma3"])
    norm = model.model.layers[0].input_layernorm
    with torch.no_grad():
        norm.weight.uniform_(-0.5, 0.5)
    gain, bias = norm_gain_and_bias(norm, 32)
    torch.testing.assert_close(gain, 1 + norm.weight, atol=1e-5, rtol=1e-5)  # Gemma scales by (1 + weight)
    layer_norm = torch.nn.LayerNorm(7)
    with torch.no_grad():
        layer_norm.weight.uniform_(0.5, 2)
        layer_norm.bias.uniform_(-1, 1)
    gain, bias = norm_gain_and_bias(layer_norm, 7)
    torch.testing.assert_close(gain, layer_norm.weight.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bias, layer_norm.bias.detach(), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def llama_circuits():
    model, tokenizer = build_family(BY_NAME["llama"])
    return Circuits(make_handle("llama", model, tokenizer, "random", "cpu"), sample_size=40)


def test_copying_score_equals_numpy_on_the_explicit_vocabulary_matrix(llama_circuits):
    circuits = llama_circuits
    handle, weights = circuits.handle, circuits.weights
    embedding = handle.model.get_input_embeddings().weight.detach().double().numpy()
    unembedding = handle.model.lm_head.weight.detach().double().numpy() * handle.model.model.norm.weight.detach(
    ).double().numpy()
    scores = circuits.copying_scores()
    for layer in range(2):
        for head in range(4):
            ov = weights.W_O[layer, head].double().numpy() @ weights.W_V[layer, head].double().numpy()
            eigenvalues = np.linalg.eigvals(unembedding @ ov @ embedding.T)  # 64 × 64: the whole vocabulary
            expected = eigenvalues.real.sum() / np.abs(eigenvalues).sum()  # zero eigenvalues add nothing
            assert scores[layer, head] == pytest.approx(expected, abs=1e-4)


def _planted(circuits: Circuits, ov: torch.Tensor) -> Circuits:
    """The same model with every head's W_O·W_V replaced by ``ov`` (W_V = ov, W_O = identity, d_model wide)."""
    d = ov.shape[0]
    weights = circuits.weights
    planted = object.__new__(Circuits)
    planted.__dict__.update(circuits.__dict__)
    layers, heads = weights.W_V.shape[:2]
    w_v = torch.zeros(layers, heads, d, d)
    w_o = torch.zeros(layers, heads, d, d)
    w_v[:] = ov
    w_o[:] = torch.eye(d)
    planted.weights = replace(weights, W_V=w_v, W_O=w_o)
    return planted


def _exact_embedding_model(circuits: Circuits) -> Circuits:
    """Unembedding = embedding (unit rows) and no layer-0 MLP, so an identity OV maps each token to itself."""
    planted = object.__new__(Circuits)
    planted.__dict__.update(circuits.__dict__)
    embedding = torch.nn.functional.normalize(circuits.handle.model.get_input_embeddings().weight.detach().float())
    planted.embedding_unembedding = embedding.t() @ embedding
    planted.sample_reads = (embedding[circuits.sample], embedding[circuits.sample])
    planted.sample_unembedding = embedding[circuits.sample]
    return planted


def test_planted_identity_copies_and_its_negative_suppresses(llama_circuits):
    base = _exact_embedding_model(llama_circuits)
    copying = _planted(base, torch.eye(32))
    assert np.allclose(copying.copying_scores(), 1.0, atol=1e-6)
    assert np.allclose(_planted(base, -torch.eye(32)).copying_scores(), -1.0, atol=1e-6)
    assert np.allclose(copying.maps_copying(k=1), 1.0)  # each token's column peaks at itself (Gram matrix)
    assert llama_circuits.copying_scores().std() > 0.01  # the random model's own heads are neither


def test_planted_successor_map_scores_one(llama_circuits, monkeypatch):
    circuits = llama_circuits
    sequence = list(range(10, 20))
    monkeypatch.setattr("analysis.methods.ov_circuits.ordinal_sequences", lambda tokenizer: {"planted": sequence})
    embedding = circuits.handle.model.get_input_embeddings().weight.detach().float()
    tokens = torch.tensor(sequence)
    # an OV map sending each sequence token's embedding to the unembedding-dual of its successor
    reads = embedding[tokens]
    unembedded = circuits.handle.model.lm_head.weight.detach().float()[tokens] * circuits.weights.final_gain
    reads_inverse = torch.linalg.pinv(reads)  # [d, n]
    written_inverse = torch.linalg.pinv(unembedded)  # [d, n]
    shift = torch.diag(torch.ones(len(sequence) - 1), -1)  # column j → row j + 1
    ov = written_inverse @ shift @ reads_inverse.t()
    planted = _planted(circuits, ov)
    planted.effective_embedding = lambda ids: embedding[ids]
    scores, counted = planted.successor_scores()
    assert counted == len(sequence) - 1
    assert np.allclose(scores, 1.0)
    unplanted, _ = circuits.successor_scores()
    assert unplanted.max() < 1.0


def test_composition_scores_equal_the_formula_on_explicit_matrices(llama_circuits):
    weights = llama_circuits.weights
    table = {kind: composition_table(weights, kind) for kind in "QKV"}
    def ov(l, h): return weights.W_O[l, h].double() @ weights.W_V[l, h].double()
    def qk(l, h): return weights.W_Q[l, h].double().t() @ weights.W_K[l, h].double()
    for kind, rows in table.items():
        assert len(rows) == 16  # 4 heads of layer 1 × 4 heads of layer 0
        for row in rows.itertuples():
            a, b = (row.source_layer, row.source_head), (row.target_layer, row.target_head)
            left = {"Q": qk(*b).t(), "K": qk(*b), "V": ov(*b)}[kind]
            expected = (left @ ov(*a)).norm() / (left.norm() * ov(*a).norm())
            assert row.score == pytest.approx(float(expected), rel=1e-6)
        assert rows["baseline"].nunique() == 1
        assert 0 < rows["baseline"].iloc[0] < 1
    assert random_baseline(weights, "K", seed=1) != random_baseline(weights, "K", seed=0)


def test_weight_labels_follow_their_thresholds():
    import pandas as pd

    scores = {"induction": 0.0, "duplicate_token": 0.0, "previous_token": 0.1, "self": 0.0, "first_token": 0.6,
              "local_mass": 0.1, "entropy": 0.1, "cls_mass": np.nan, "sep_mass": np.nan, "punct_mass": 0.0,
              "output_norm": 1.0, "maps_copying": 0.0}
    frame = pd.DataFrame([{**scores, "copying": 0.95, "successor": 0.1}, {**scores, "copying": -0.95, "successor": 0.1},
                          {**scores, "copying": 0.2, "successor": 0.8}, {**scores, "copying": 0.2, "successor": 0.1}])
    assert list(label_heads(frame, LabelThresholds())["label"]) == ["sink", "sink", "successor", "sink"]
    no_sinks = LabelThresholds(sink=0.9, successor=0.9)
    assert list(label_heads(frame, no_sinks)["label"]) == ["copying", "copy-suppression", "", ""]
    assert list(label_heads(frame, replace(no_sinks, copy_suppression=0.99))["label"]) == ["copying", "", "", ""]
