"""Every supported model family, tiny and random: the runtime equals the library and independent oracles.

For each family (``tests.family_models.FAMILIES``) the clean run must equal plain transformers eager; a
zero-ablated head must equal a forward pre-hook on the layer's output projection that zeroes that head's
input slice (the oracle lives only here); direct logit attribution must sum to the logit and each head's
term must equal W_O[:, h] · z_h through the final norm, computed by hand; the census must run; cached
greedy generation with an ablated head must equal the uncached reference.
"""
from __future__ import annotations

import copy
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from analysis.methods.ablation import greedy_generate, greedy_generate_uncached
from analysis.methods.census import head_census
from analysis.methods.logit_attribution import attribution_terms, decompose
from analysis.runtime.forward import InterventionsUnsupported, head_input_grads, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import HeadIntervention, SiteEdit, compile_edits
from analysis.runtime.loading import make_handle
from analysis.runtime.pooling import thumbnails as pool_thumbnails
from analysis.runtime.trace import run_trace
from tests.oracles import head_replaced, hooked_output, model_output, stacked_patterns
from tests.family_models import FAMILIES, WINDOW, Family, build_family, tiny_view_only

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny random models: one thread is fastest

CAUSAL_TEXT = "the cat sat on the mat."  # 23 characters: longer than every sliding window
ENCODER_TEXT = "the cat sat on the mat ."
ATOL = 1e-5
# Every family allows the layer restart; a change here shows up as a failure of test_clean_logits_equal_library_eager.
EXPECTED_RESTART = {family.name: True for family in FAMILIES}

BY_NAME = {family.name: family for family in FAMILIES}
CAUSAL = [family.name for family in FAMILIES if family.causal]
ALL = [family.name for family in FAMILIES]
SLIDING = {"mistral", "qwen2", "gemma2", "gemma3", "phi3"}  # families built with a sliding window


@dataclass(frozen=True, eq=False)
class Prepared:
    """A family's handle and the plain-library output taken before the handle existed."""

    handle: ModelHandle
    ids: torch.Tensor
    reference: torch.Tensor  # eager logits (encoders: last hidden state), soft-capped where the model caps
    reference_patterns: tuple[torch.Tensor, ...]


_PREPARED: dict[str, Prepared] = {}


def prepared(name: str) -> Prepared:
    """Build the family once per session: library eager output first, then ``make_handle``."""
    if name not in _PREPARED:
        family: Family = BY_NAME[name]
        model, tokenizer = build_family(family)
        ids = tokenizer(CAUSAL_TEXT if family.causal else ENCODER_TEXT, return_tensors="pt").input_ids
        assert getattr(tokenizer, "unk_token_id", None) not in ids[0].tolist()
        assert model.config._attn_implementation == "eager"
        with torch.inference_mode():
            output = model(ids, use_cache=False, output_attentions=True) if family.causal else model(
                ids, output_attentions=True)
        reference = output.logits if family.causal else output.last_hidden_state
        _PREPARED[name] = Prepared(make_handle(name, model, tokenizer, "random", "cpu"), ids, reference.clone(),
                                   tuple(a.clone() for a in output.attentions))
    return _PREPARED[name]


def close(actual, expected, atol: float = ATOL, rtol: float = 0.0) -> None:
    torch.testing.assert_close(torch.as_tensor(actual).float(), torch.as_tensor(expected).float(), atol=atol,
                               rtol=rtol)


@pytest.mark.parametrize("name", ALL)
def test_clean_logits_equal_library_eager(name, record_property):
    case = prepared(name)
    handle = case.handle
    record_property("supports_restart", handle.parts.supports_restart)
    assert handle.info.supports_interventions, handle.info.notes
    assert handle.parts.output_projections is not None and handle.info.supports_head_writes
    assert handle.parts.supports_restart is EXPECTED_RESTART[name], handle.info.notes
    result = run_with_cache(handle, case.ids, sites=("pattern",))
    close(result.logits, case.reference)
    patterns = result.stack("pattern")
    assert len(patterns) == len(case.reference_patterns) == handle.info.n_layers
    for ours, theirs in zip(patterns, case.reference_patterns):
        close(ours, theirs, atol=1e-6)
    config = handle.parts.config
    window = getattr(config, "sliding_window", None)
    kinds = getattr(config, "layer_types", None) or ["sliding_attention" if window else "full_attention"] * 2
    for kind, pattern in zip(kinds, patterns):  # the windows are shorter than the text, so they matter
        query = torch.arange(pattern.shape[-1])
        far = pattern[..., (query[:, None] - query[None, :]) >= WINDOW].sum()
        assert (far == 0) if kind == "sliding_attention" else (far > 1), (kind, float(far))
    assert (window is not None) == (name in SLIDING)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("layer, head", [(0, 3), (1, 2)])
def test_zero_ablated_head_equals_hook_oracle(name, layer, head):
    case = prepared(name)
    handle, ids, info = case.handle, case.ids, case.handle.info
    with head_replaced(handle, layer, head):
        oracle = model_output(handle, ids)
    clean = run_with_cache(handle, ids, sites=("resid_pre",))
    close(clean.logits, case.reference)  # the hook was removed again
    assert (oracle - clean.logits).abs().max() > 1e-3, "zeroing the head should change the output"
    edits = compile_edits([[HeadIntervention(layer, head, "zero", 0.0)]], info.n_layers, info.n_heads)
    close(run_with_cache(handle, ids, edits=edits).logits, oracle)
    restarted = run_with_cache(handle, ids, edits=edits, start_layer=layer, start_residual=clean["resid_pre", layer])
    close(restarted.logits, oracle)


def _norm_linear(norm: torch.nn.Module | None, vector: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """``norm`` as a linear map of ``vector`` with its scale frozen at ``stream``, written out per family."""
    if norm is None:
        return vector
    name = type(norm).__name__
    if isinstance(norm, torch.nn.LayerNorm):
        gain, eps, centred = norm.weight, norm.eps, True
    elif name == "OlmoLayerNorm":  # LayerNorm without parameters
        gain, eps, centred = torch.ones_like(vector), 1e-5, True
    elif name.startswith("Gemma"):  # RMSNorm with a (1 + weight) gain
        gain, eps, centred = 1.0 + norm.weight, norm.eps, False
    else:  # LLaMA-style RMSNorm
        gain, eps, centred = norm.weight, norm.variance_epsilon, False
    if centred:
        vector, stream = vector - vector.mean(), stream - stream.mean()
    return gain * vector / torch.sqrt(stream.pow(2).mean() + eps)


def _captured_inputs(handle: ModelHandle, ids: torch.Tensor, modules: dict[str, torch.nn.Module]) -> dict:
    """The input of each named module in one plain forward (pre-hooks, removed afterwards)."""
    seen: dict[str, torch.Tensor] = {}
    registered = [module.register_forward_pre_hook(lambda _m, args, key=key: seen.__setitem__(key, args[0].clone()))
                  for key, module in modules.items() if module is not None]
    hooked_output(handle, ids, registered)
    return seen


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("position", [-1, 5])
def test_direct_logit_attribution_sums_to_logit_and_matches_hook_oracle(name, position):
    case = prepared(name)
    handle, ids, info, parts = case.handle, case.ids, case.handle.info, case.handle.parts
    d = decompose(handle, ids, position)
    cap = getattr(handle.model.config, "final_logit_softcapping", None)
    model_logits = case.reference[0, position]
    assert (cap is not None) == (name == "gemma2")
    close(torch.tanh(torch.from_numpy(d.logits) / cap) * cap if cap else d.logits, model_logits, atol=2e-5)
    token_ids = [int(model_logits.argmax()), 10]
    for token_id in token_ids:
        terms = attribution_terms(handle, d, token_id)
        assert len(terms) == 1 + info.n_layers * (info.n_heads + 2) + 2
        assert terms["dla"].sum() == pytest.approx(float(d.logits[token_id]), abs=1e-4)

    # Each head's term by hand: z from a pre-hook on the output projection, W_O's slice, the attention-output
    # norm (Gemma) and the final norm frozen at the streams they saw in that same plain forward.
    layers = range(info.n_layers)
    modules = {f"z{l}": parts.output_projections[l] for l in layers}
    modules |= {f"attn_norm{l}": parts.attention_output_norms[l] for l in layers}
    modules["final"] = parts.final_norm
    seen = _captured_inputs(handle, ids, modules)
    final_stream = seen["final"][0, position]
    unembed = handle.model.get_output_embeddings().weight
    hd = info.head_dim
    for layer in layers:
        projection = parts.output_projections[layer]
        weight = projection.weight.t() if type(projection).__name__ == "Conv1D" else projection.weight
        attn_norm = parts.attention_output_norms[layer]
        assert (attn_norm is not None) == name.startswith("gemma")
        for head in range(info.n_heads):
            z = seen[f"z{layer}"][0, position, head * hd:(head + 1) * hd]
            write = weight[:, head * hd:(head + 1) * hd] @ z
            if attn_norm is not None:
                write = _norm_linear(attn_norm, write, seen[f"attn_norm{layer}"][0, position])
            term = _norm_linear(parts.final_norm, write, final_stream)
            close(d.heads[layer, head], term, atol=1e-5, rtol=1e-4)
            for token_id in token_ids:
                terms = attribution_terms(handle, d, token_id).set_index("term")["dla"]
                assert terms[f"L{layer}H{head}"] == pytest.approx(float(unembed[token_id] @ term), abs=1e-5)
    assert np.abs(d.heads).max() > 1e-2


@pytest.mark.parametrize("name", ALL)
def test_census_runs(name):
    handle = prepared(name).handle
    frame = head_census(handle, CAUSAL_TEXT if handle.info.causal else ENCODER_TEXT, probe_length=8)
    assert len(frame) == handle.info.n_layers * handle.info.n_heads
    assert list(frame["head"]) == [f"L{l}H{h}" for l in range(handle.info.n_layers)
                                   for h in range(handle.info.n_heads)]
    assert np.isfinite(frame["previous_token"]).all()
    assert np.isfinite(frame["output_norm"]).all()


@pytest.mark.parametrize("name", CAUSAL)
def test_cached_generation_equals_uncached_with_ablated_head(name):
    case = prepared(name)
    ablated = [HeadIntervention(1, 0)]
    cached = greedy_generate(case.handle, case.ids, ablated, 5)
    assert cached == greedy_generate_uncached(case.handle, case.ids, ablated, 5)
    assert len(cached) == 5


def test_attention_outside_the_interface_is_view_only():
    model, tokenizer = tiny_view_only()
    reference = copy.deepcopy(model)
    handle = make_handle("tiny-mpnet", model, tokenizer, "random", "cpu")
    assert handle.info.supports_interventions is False and handle.info.supports_restart is False
    (note,) = handle.info.notes
    assert "MPNetModel" in note and "pattern views work" in note and "interventions do not" in note
    ids = tokenizer(ENCODER_TEXT, return_tensors="pt").input_ids
    with pytest.raises(InterventionsUnsupported) as raised:
        run_with_cache(handle, ids)
    assert str(raised.value) == note
    trace = run_trace(handle, ENCODER_TEXT)
    patterns = stacked_patterns(trace)
    assert patterns.shape == (2, 4, ids.shape[1], ids.shape[1])
    np.testing.assert_allclose(patterns.sum(-1), 1.0, atol=1e-5)
    with torch.inference_mode():
        expected = reference(ids, output_attentions=True).attentions
    np.testing.assert_allclose(patterns, torch.stack([a[0] for a in expected]).numpy(), atol=1e-6)


# --- named sites: each equals a plain hook on the model's own submodules ---------------------------------------

STREAM_SITES = ("resid_pre", "attn_in", "attn_out", "resid_mid", "mlp_out", "resid_post")


def _mlp_module(name: str, layer: torch.nn.Module) -> torch.nn.Module:
    """The module whose output the layer adds to the stream as its MLP's write (oracle's own choice)."""
    return layer.post_feedforward_layernorm if name.startswith("gemma") else layer.mlp


def _hooked_streams(handle: ModelHandle, ids: torch.Tensor, name: str) -> dict[tuple[str, int], torch.Tensor]:
    """Each layer's input, output and MLP output, and its attention module's input, from one plain forward."""
    seen: dict[tuple[str, int], torch.Tensor] = {}

    def keep(key, tensor):
        seen[key] = (tensor[0] if isinstance(tensor, tuple) else tensor).detach().clone()

    hooks = []
    for index, layer in enumerate(handle.parts.layers):
        hooks.append(layer.register_forward_pre_hook(
            lambda _m, args, kwargs, i=index: keep(("resid_pre", i), args[0] if args else kwargs["hidden_states"]),
            with_kwargs=True))
        hooks.append(layer.register_forward_hook(lambda _m, _a, out, i=index: keep(("resid_post", i), out)))
        if handle.info.causal:
            hooks.append(_mlp_module(name, layer).register_forward_hook(
                lambda _m, _a, out, i=index: keep(("mlp_out", i), out)))
    hooked_output(handle, ids, hooks)
    return seen


@pytest.mark.parametrize("name", ALL)
def test_stream_sites_equal_hook_oracles(name):
    case = prepared(name)
    handle, ids = case.handle, case.ids
    causal = handle.info.causal
    assert handle.parts.supports_stream_writes is causal, handle.info.notes
    sites = STREAM_SITES if causal else ("resid_pre", "attn_in", "resid_post")
    cache = run_with_cache(handle, ids, sites=sites)
    close(cache.logits, case.reference)
    seen = _hooked_streams(handle, ids, name)
    for layer in range(handle.info.n_layers):
        close(cache["resid_pre", layer], seen["resid_pre", layer])
        close(cache["attn_in", layer], seen["resid_pre", layer])
        close(cache["resid_post", layer], seen["resid_post", layer])
        if causal:
            close(cache["mlp_out", layer], seen["mlp_out", layer])
            # the attention's write is what the layer adds besides the MLP's
            close(cache["attn_out", layer], seen["resid_post", layer] - seen["resid_pre", layer]
                  - seen["mlp_out", layer])
            close(cache["resid_mid", layer], seen["resid_post", layer] - seen["mlp_out", layer])
    assert cache.layers("resid_pre") == list(range(handle.info.n_layers))
    assert ("pattern", 0) not in cache


@pytest.mark.parametrize("name", CAUSAL)
def test_zeroed_mlp_out_equals_a_hook_zeroing_the_mlp(name):
    case = prepared(name)
    handle, ids = case.handle, case.ids
    d = handle.info.d_model
    zero = lambda _m, _a, out: torch.zeros_like(out)  # noqa: E731
    oracle = hooked_output(handle, ids, [_mlp_module(name, handle.parts.layers[0]).register_forward_hook(zero)])
    edited = run_with_cache(handle, ids, edits=[SiteEdit("mlp_out", 0, torch.zeros(d))]).logits
    assert (oracle - case.reference).abs().max() > 1e-3
    close(edited, oracle)
    clean = run_with_cache(handle, ids, sites=("resid_pre",))
    restarted = run_with_cache(handle, ids, edits=[SiteEdit("mlp_out", 1, torch.zeros(d))], start_layer=1,
                               start_residual=clean["resid_pre", 1]).logits
    close(restarted, hooked_output(handle, ids, [_mlp_module(name, handle.parts.layers[1]).register_forward_hook(zero)]))


@pytest.mark.parametrize("name", CAUSAL)
def test_patched_stream_at_a_position_equals_a_hook(name):
    case = prepared(name)
    handle, ids = case.handle, case.ids
    value = torch.linspace(-1, 1, handle.info.d_model)

    def patch(_module, args, kwargs):
        hidden = (args[0] if args else kwargs["hidden_states"]).clone()
        hidden[:, 3] = value
        return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

    oracle = hooked_output(handle, ids, [handle.parts.layers[1].register_forward_pre_hook(patch, with_kwargs=True)])
    edit = SiteEdit("resid_pre", 1, value[None, None], positions=(3,))
    close(run_with_cache(handle, ids, edits=[edit]).logits, oracle)
    assert (oracle - case.reference).abs().max() > 1e-3


QKV_PROJECTED = [name for name in CAUSAL if name not in ("gpt2", "gpt_neox", "phi3")]  # separate q/k/v projections


@pytest.mark.parametrize("name", QKV_PROJECTED)
@pytest.mark.parametrize("kind, head", [("q", 2), ("k", 1), ("v", 0)])
def test_replaced_head_input_equals_a_hook_on_its_projection(name, kind, head):
    """A zero q/k/v for one head equals zeroing that head's slice of the projection's output (norms and rotary
    map zero to zero)."""
    case = prepared(name)
    handle, ids, e = case.handle, case.ids, case.handle.info.head_dim
    attention = next(m for m in handle.parts.layers[1].modules() if id(m) in handle.parts.layer_of)
    projection = getattr(attention, f"{kind}_proj")

    def zero(_module, _args, out):
        out = out.clone()
        out[..., head * e:(head + 1) * e] = 0.0
        return out

    oracle = hooked_output(handle, ids, [projection.register_forward_hook(zero)])
    cache = run_with_cache(handle, ids, edits=[SiteEdit(kind, 1, torch.zeros(e), head=head)], sites=(kind,))
    close(cache.logits, oracle)
    assert float(cache[kind, 1][:, head].abs().max()) == 0.0
    assert (oracle - case.reference).abs().max() > 1e-4


@pytest.mark.parametrize("name", CAUSAL)
def test_component_writes_sum_to_the_final_stream(name):
    case = prepared(name)
    handle, info = case.handle, case.handle.info
    cache = run_with_cache(handle, case.ids, sites=("resid_pre", "head_output", "mlp_out", "resid_post"))
    names, writes = cache.component_writes()
    assert names[:1 + info.n_heads] == ["input"] + [f"L0H{h}" for h in range(info.n_heads)]
    assert names[-2:] == [f"L{info.n_layers - 1} attention bias", f"MLP{info.n_layers - 1}"]
    assert writes.shape == (len(names), 1, case.ids.shape[1], info.d_model)
    close(writes.sum(0), cache.final_stream)
    # each layer's head writes and bias add up to its attention's write
    attn = run_with_cache(handle, case.ids, sites=("attn_out",))
    for layer in range(info.n_layers):
        heads = cache.head_writes(layer).sum(2)
        bias = writes[names.index(f"L{layer} attention bias")]
        close(heads + bias, attn["attn_out", layer])


@pytest.mark.parametrize("name", CAUSAL)
def test_threads_with_different_site_edits_equal_serial(name):
    case = prepared(name)
    handle, ids, d = case.handle, case.ids, case.handle.info.d_model
    edit_sets = [[SiteEdit("mlp_out", 0, torch.zeros(d))], [SiteEdit("resid_pre", 1, torch.ones(d), positions=(2,))],
                 [SiteEdit("mlp_out", 1, torch.ones(d), mode="add")], None]
    serial = [run_with_cache(handle, ids, edits=edits, sites=("mlp_out",)) for edits in edit_sets]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda edits: run_with_cache(handle, ids, edits=edits, sites=("mlp_out",)),
                                 edit_sets * 3))
    for index, result in enumerate(threaded):
        expected = serial[index % len(edit_sets)]
        close(result.logits, expected.logits, atol=0)
        close(result["mlp_out", 1], expected["mlp_out", 1], atol=0)
    assert not torch.allclose(serial[0].logits, serial[3].logits)


def _recomputed_query(handle: ModelHandle, layer: int, head: int, stream: torch.Tensor) -> torch.Tensor:
    """Head ``head``'s query from ``stream`` by the layer's own norm, q_proj (and q-norm) and the modeling file's
    ``apply_rotary_pos_emb``: [b, t, e]."""
    block = handle.parts.layers[layer]
    attention = block.self_attn
    modeling = sys.modules[type(attention).__module__]
    e = handle.info.head_dim
    query = attention.q_proj(block.input_layernorm(stream)).view(*stream.shape[:2], -1, e).transpose(1, 2)
    if hasattr(attention, "q_norm"):
        query = attention.q_norm(query)
    cos, sin = handle.model.model.rotary_emb(stream, torch.arange(stream.shape[1])[None])
    query, _ = modeling.apply_rotary_pos_emb(query, query, cos, sin)
    return query[:, head]


@pytest.mark.parametrize("name", ["llama", "qwen3", "mistral"])
def test_head_query_input_gradient_equals_oracles(name):
    case = prepared(name)
    handle, ids, info = case.handle, case.ids, case.handle.info
    target = int(case.reference[0, -1].argmax())
    cache = run_with_cache(handle, ids, sites=("resid_pre", "q"), grad=True)
    torch.log_softmax(cache.logits[0, -1], -1)[target].backward()
    grads = head_input_grads(cache, "q")
    assert grads.shape == (info.n_layers, info.n_heads, 1, ids.shape[1], info.d_model)
    layer, head = 1, 2
    stream = cache["resid_pre", layer].detach()
    with torch.no_grad():
        close(_recomputed_query(handle, layer, head, stream), cache["q", layer][:, head])
    # vector-Jacobian product through the oracle's own recomputation of the query
    probe = stream.clone().requires_grad_()
    with torch.enable_grad():
        (oracle,) = torch.autograd.grad(_recomputed_query(handle, layer, head, probe), probe,
                                        grad_outputs=cache.grad("q", layer)[:, head])
    close(grads[layer, head], oracle, atol=1e-6, rtol=1e-4)
    assert grads[layer, head].abs().max() > 1e-4
    # finite difference: only this head's query sees the moved stream (a q edit), everything else is clean
    direction = torch.randn(stream.shape, generator=torch.Generator().manual_seed(0))
    epsilon = 1e-2

    def metric(sign: float) -> float:
        with torch.no_grad():
            query = _recomputed_query(handle, layer, head, stream + sign * epsilon * direction)
        logits = run_with_cache(handle, ids, edits=[SiteEdit("q", layer, query, head=head)]).logits
        return float(torch.log_softmax(logits[0, -1].double(), -1)[target])

    slope = (metric(1.0) - metric(-1.0)) / (2 * epsilon)
    assert slope == pytest.approx(float((grads[layer, head] * direction).sum()), rel=2e-2, abs=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_fused_attention_equals_eager(name, monkeypatch):
    """Runs that keep no pattern use the library's fused kernel (not for Gemma 2's soft-capped attention)."""
    from analysis.runtime import attention

    case = prepared(name)
    handle, ids, info = case.handle, case.ids, case.handle.info
    fused_calls = []
    original = attention.sdpa_attention_forward
    monkeypatch.setattr(attention, "sdpa_attention_forward",
                        lambda *args, **kwargs: fused_calls.append(1) or original(*args, **kwargs))
    edits = compile_edits([[], [HeadIntervention(0, 1, "scale", 0.5), HeadIntervention(1, 2)]], info.n_layers,
                          info.n_heads)
    fused = run_with_cache(handle, ids, edits=edits, sites=("head_output", "resid_post"))
    assert len(fused_calls) == (0 if name == "gemma2" else info.n_layers)
    eager = run_with_cache(handle, ids, edits=edits, sites=("head_output", "resid_post", "pattern"))
    assert len(fused_calls) == (0 if name == "gemma2" else info.n_layers)
    close(fused.logits[:1], case.reference)
    close(fused.logits, eager.logits)
    for layer in range(info.n_layers):
        close(fused["head_output", layer], eager["head_output", layer])
        close(fused["resid_post", layer], eager["resid_post", layer])
    assert (fused.logits[0] - fused.logits[1]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ALL)
def test_trace_thumbnails_equal_pooled_eager_patterns(name):
    """The trace reads block means through the fused attention; they equal pooling each eager pattern."""
    handle = prepared(name).handle
    trace = run_trace(handle, (CAUSAL_TEXT if handle.info.causal else ENCODER_TEXT) * 5)
    ids = torch.from_numpy(trace.token_ids.copy())[None]
    eager = run_with_cache(handle, ids, sites=("pattern",))
    cells = min(ids.shape[1], 64)
    for layer in range(handle.info.n_layers):
        pooled, without_sink = pool_thumbnails(eager["pattern", layer][0], cells)
        np.testing.assert_allclose(trace.thumbnails[layer], pooled, rtol=0, atol=1e-6)
        np.testing.assert_allclose(trace.thumbnails_without_sink[layer], without_sink, rtol=0, atol=1e-6)
    assert ids.shape[1] > 64 if handle.info.causal else ids.shape[1] < 64  # blocks that overlap / one per token


@pytest.mark.parametrize("name", ["llama", "gemma3", "gpt2"])
def test_gradients_of_a_restart_from_a_kept_stream_equal_the_full_run(name):
    case = prepared(name)
    handle, ids = case.handle, case.ids
    target = int(case.reference[0, -1].argmax())
    full = run_with_cache(handle, ids, sites=("resid_pre", "k", "mlp_out", "resid_mid"), grad=True)
    torch.log_softmax(full.logits[0, -1], -1)[target].backward()
    kept = run_with_cache(handle, ids, sites=("resid_pre",))  # no gradients: inference tensors
    restart = run_with_cache(handle, ids, sites=("resid_pre", "k", "mlp_out", "resid_mid"), grad=True,
                             start_layer=1, start_residual=kept["resid_pre", 1])
    torch.log_softmax(restart.logits[0, -1], -1)[target].backward()
    for site in ("resid_pre", "k", "mlp_out", "resid_mid"):
        close(restart.grad(site, 1), full.grad(site, 1), atol=1e-6)
    close(head_input_grads(restart, "k")[0], head_input_grads(full, "k")[1], atol=1e-6)
    assert full.grad("resid_pre", 0).abs().max() > 0 and restart.layers("k") == [1]
