"""QK attribution: the query-side × key-side terms sum to the head's logit on every causal family, the logits
match the library's own attention weights, and a term equals the logit's change when its component's write is
removed with norms frozen — computed here with the model's own modules, hooks and rotary function only."""
from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
import torch

from analysis.methods.qk_attribution import component_names, qk_attribution, qk_breakdown
from analysis.runtime.loading import make_handle
from tests.family_models import FAMILIES, build_family

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "the cat sat on the mat."
CAUSAL = [family for family in FAMILIES if family.causal]
_HANDLES: dict[str, tuple] = {}


def family_case(name: str):
    """(handle, ids, the library's eager attention weights per layer), built once per family."""
    if name not in _HANDLES:
        family = next(f for f in CAUSAL if f.name == name)
        model, tokenizer = build_family(family)
        ids = tokenizer(TEXT, return_tensors="pt").input_ids
        with torch.inference_mode():
            attentions = model(ids, use_cache=False, output_attentions=True).attentions
        _HANDLES[name] = (make_handle(name, model, tokenizer, "random", "cpu"), ids, attentions)
    return _HANDLES[name]


@pytest.mark.parametrize("name", [family.name for family in CAUSAL])
@pytest.mark.parametrize("layer, head", [(0, 1), (1, 3)])
def test_terms_sum_to_the_logit_and_logits_match_the_library_weights(name, layer, head):
    handle, ids, attentions = family_case(name)
    query = ids.shape[1] - 1
    breakdown = qk_breakdown(handle, ids, layer, head, query, query - 2)
    terms = qk_attribution(handle, ids, layer, head, query, query - 2)
    assert len(terms) == len(component_names(layer, handle.info.n_heads)) ** 2
    assert terms["term"].sum() == pytest.approx(breakdown.cell.logit, abs=1e-4)
    assert breakdown.cell.sides()["key_side"].sum() == pytest.approx(breakdown.cell.logit, abs=1e-4)
    logits = torch.from_numpy(breakdown.logits).double()
    cap = getattr(handle.parts.config, "attn_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    seen = ~torch.isnan(logits)
    weights = attentions[layer][0, head, query].double()
    assert bool((weights[~seen] == 0).all()) and bool((weights[seen] > 0).all())
    expected = weights[seen].log()  # softmax: log-weights equal the logits up to the row's constant
    torch.testing.assert_close(logits[seen] - logits[seen].mean(), expected - expected.mean(), atol=1e-4, rtol=0)
    rival = breakdown.competitor
    assert rival is not None and rival.key != query - 2 and bool(seen[rival.key])
    assert rival.matrix.sum() == pytest.approx(float(breakdown.logits[rival.key]), abs=1e-4)


def _frozen(norm: torch.nn.Module | None, vector: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``norm(vector)`` with the scale it has at ``clean``, from the model's own module: the input is rescaled so
    that its spread equals the clean one's (RMS for RMSNorm, std for LayerNorm), normed, and scaled back."""
    if norm is None:
        return vector
    centred = "LayerNorm" in type(norm).__name__
    spread = lambda x: (x - x.mean(-1, keepdim=True) if centred else x).pow(2).mean(-1, keepdim=True).sqrt()  # noqa
    factor = spread(clean) / spread(vector)
    bias = norm(torch.zeros_like(vector))
    return (norm(vector * factor) - bias) / factor + bias


class Oracle:
    """One head's logit from the streams, with the model's own modules and each norm frozen at the clean run."""

    def __init__(self, handle, ids, layer: int, head: int) -> None:
        model = handle.model
        block = handle.parts.layers[layer]
        self.attention, self.block, self.layer, self.head = block.self_attn, block, layer, head
        captured: dict[str, torch.Tensor] = {}
        hooks = [module.register_forward_pre_hook(lambda _m, args, key=key: captured.__setitem__(key, args[0]))
                 for key, module in (("z0", handle.parts.layers[0].self_attn.o_proj),)]
        hooks.append(handle.parts.layers[0].self_attn.register_forward_hook(
            lambda _m, _args, output: captured.__setitem__("attn0", output[0])))
        with torch.inference_mode():
            output = model(ids, use_cache=False, output_hidden_states=True)
        for hook in hooks:
            hook.remove()
        self.streams = [state[0] for state in output.hidden_states]
        self.captured = captured
        body = model.base_model
        positions = torch.arange(ids.shape[1])[None]
        rotary = body.rotary_emb
        kind = (getattr(handle.parts.config, "layer_types", None) or ["full_attention"] * 2)[layer]
        self.cos_sin = (rotary(self.streams[0][None], positions, kind)
                        if "layer_type" in inspect.signature(rotary.forward).parameters
                        else rotary(self.streams[0][None], position_ids=positions))
        self.rotate = sys.modules[type(self.attention).__module__].apply_rotary_pos_emb
        self.n_heads, self.width = handle.info.n_heads, handle.info.head_dim
        self.kv_head = head // (handle.info.n_heads // handle.info.n_kv_heads)

    def projected(self, kind: str, stream: torch.Tensor, clean: torch.Tensor, position: int) -> torch.Tensor:
        """The head's query ("q") or key ("k") of ``stream`` at ``position``, norms frozen at ``clean``."""
        norm = getattr(self.block, "input_layernorm", None)
        projection = getattr(self.attention, f"{kind}_proj")
        pre, pre_clean = (projection(_frozen(norm, x, clean)).view(-1, self.width) for x in (stream, clean))
        head_norm = getattr(self.attention, f"{kind}_norm", None)
        if head_norm is not None:
            pre = _frozen(head_norm, pre, pre_clean)
        cos, sin = (part[:, position:position + 1] for part in self.cos_sin)
        rotated = self.rotate(pre[None, :, None], pre[None, :, None], cos, sin)[0][0, :, 0]
        return rotated[self.head if kind == "q" else self.kv_head]

    def logit(self, query: int, key: int, query_minus: torch.Tensor | None = None,
              key_minus: torch.Tensor | None = None) -> float:
        """The logit with ``query_minus`` removed from the query's stream and ``key_minus`` from the key's."""
        stream = self.streams[self.layer]
        q_stream = stream[query] - (0 if query_minus is None else query_minus)
        k_stream = stream[key] - (0 if key_minus is None else key_minus)
        q = self.projected("q", q_stream, stream[query], query)
        k = self.projected("k", k_stream, stream[key], key)
        return float(q @ k) * self.attention.scaling

    def head_write(self, handle, head: int, position: int) -> torch.Tensor:
        """Layer 0 head ``head``'s write at ``position``: its slice of W_O applied to its captured output (Gemma:
        through the attention-output norm frozen at the whole attention output)."""
        z = self.captured["z0"][0, position]
        columns = slice(head * self.width, (head + 1) * self.width)
        weight = handle.parts.layers[0].self_attn.o_proj.weight
        write = weight[:, columns] @ z[columns]
        norm = handle.parts.attention_output_norms[0]
        return write if norm is None else _frozen(norm, write, self.captured["attn0"][0, position]) - norm(
            torch.zeros_like(write))

    def mlp_write(self, handle, position: int) -> torch.Tensor:
        """Layer 0's MLP write at ``position``: what the layer adds besides its attention's write."""
        attention = self.captured["attn0"][0, position]
        norm = handle.parts.attention_output_norms[0]
        attention = attention if norm is None else norm(attention)
        return self.streams[1][position] - self.streams[0][position] - attention


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3", "gemma3", "olmo"])
def test_a_term_equals_the_logit_change_when_its_writes_are_removed(name):
    handle, ids, _ = family_case(name)
    layer, head, query = 1, 2, ids.shape[1] - 1
    key = query - 3
    oracle = Oracle(handle, ids, layer, head)
    cell = qk_breakdown(handle, ids, layer, head, query, key).cell
    names = list(cell.components)
    matrix = cell.matrix
    clean = oracle.logit(query, key)
    assert clean == pytest.approx(cell.logit, abs=1e-4)
    head_write = oracle.head_write(handle, 1, key)
    mlp_write = oracle.mlp_write(handle, query)
    a, b = names.index("MLP0"), names.index("L0H1")
    assert clean - oracle.logit(query, key, key_minus=head_write) == pytest.approx(matrix[:, b].sum(), abs=1e-4)
    assert clean - oracle.logit(query, key, query_minus=mlp_write) == pytest.approx(matrix[a].sum(), abs=1e-4)
    both = (clean - oracle.logit(query, key, query_minus=mlp_write) - oracle.logit(query, key, key_minus=head_write)
            + oracle.logit(query, key, query_minus=mlp_write, key_minus=head_write))
    assert both == pytest.approx(float(matrix[a, b]), abs=1e-4)
    assert abs(matrix[a, b]) > 1e-4  # the pair contributes something, so the check can fail


def test_bad_cells_get_a_clear_message():
    handle, ids, _ = family_case("llama")
    with pytest.raises(ValueError, match="causal"):
        qk_attribution(handle, ids, 0, 0, 3, 5)
    with pytest.raises(ValueError, match="outside"):
        qk_attribution(handle, ids, 7, 0, 3, 1)


def test_breakdown_from_a_reused_run_equals_a_fresh_one():
    from analysis.methods.qk_attribution import component_run

    handle, ids, _ = family_case("gemma3")
    run = component_run(handle, ids)
    fresh = qk_breakdown(handle, ids, 1, 0, 10, 7)
    reused = qk_breakdown(handle, ids, 1, 0, 10, 7, run=run)
    np.testing.assert_allclose(reused.cell.matrix, fresh.cell.matrix, atol=1e-5)
    np.testing.assert_allclose(reused.logits, fresh.logits, atol=1e-5)


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_parts_at_every_key_sum_to_the_logit_row(name):
    from analysis.methods.qk_attribution import _component_parts, component_run, head_reads

    handle, ids, _ = family_case(name)
    layer, head, query = 1, 1, ids.shape[1] - 1
    breakdown = qk_breakdown(handle, ids, layer, head, query, 0)
    cache = component_run(handle, ids)
    stream = cache["resid_pre", layer][:, :query + 1]
    cos_sin = handle.parts.layer_inputs(stream)[layer].get("position_embeddings")
    _, read = head_reads(handle, layer, head, stream[0], cos_sin and tuple(p[:, :query + 1] for p in cos_sin))
    every = torch.arange(query + 1)
    keys = _component_parts(cache, layer, read, every)  # [n, keys, e]
    logits = breakdown.cell.scaling * keys.sum(0) @ torch.from_numpy(breakdown.cell.query_parts).sum(0)
    seen = ~np.isnan(breakdown.logits)
    np.testing.assert_allclose(logits.numpy()[seen], breakdown.logits[seen], atol=1e-4)
    for only in (0, 3, len(breakdown.cell.components) - 1):  # input, a head, bias: one component alone
        np.testing.assert_allclose(_component_parts(cache, layer, read, every, only=only)[0].numpy(),
                                   keys[only].numpy(), atol=1e-5)
