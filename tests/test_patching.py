"""Activation patching on a tiny random model of every causal family: sanity identities, independent oracles.

The oracles are hooks on the model's own forward (tests only): a head patch equals replacing that head's slice
of the output projection's input with the source run's z; a residual patch equals replacing the layer's input
hidden state at that position. The identities follow from the model's structure (Heimersheim & Nanda 2024):
patching the embeddings at every position restores the clean run, patching nothing leaves the corrupted one,
and patching the embedding and every head of layers 0…l at the last position equals patching the residual
stream leaving layer l there (the MLPs are position-wise, so they follow; at an earlier position later
positions would read the patched embedding through attention, so the identity holds only at the last one).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from analysis.methods.metrics import MetricError
from analysis.methods.patching import PatchingError, PatchingMetric, attribution_patching, head_patching, \
    head_patching_naive, head_position_patching, residual_patching
from analysis.methods.patching_metric import metric_values
from analysis.methods.patching_runs import Patch, patched_values, prepare_runs
from analysis.runtime.forward import run_with_cache
from analysis.runtime.interventions import EditBases, HeadIntervention, compile_edits
from analysis.runtime.loading import make_handle
from tests.family_models import FAMILIES, build_family
from tests.oracles import head_replaced, model_output

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny random models: one thread is fastest

CLEAN, CORRUPTED = "the cat sat on the mat.", "the cat sat on the hat."  # same length, differ at position 19
FIRST_DIFFERENCE = 19
CAUSAL = [family.name for family in FAMILIES if family.causal]
BY_NAME = {family.name: family for family in FAMILIES}
ATOL = 1e-4  # on normalised effects: float32 noise divided by a small random model's clean − corrupted gap
RAW_ATOL = 1e-5  # on raw metric values (log-probs of size ~3: float32 spacing 2.4e-7)
_HANDLES: dict = {}


def family_case(name: str):
    """(handle, clean ids, corrupted ids) of a family, built once per session."""
    if name not in _HANDLES:
        model, tokenizer = build_family(BY_NAME[name])
        handle = make_handle(name, model, tokenizer, "random", "cpu")
        ids = [torch.tensor([tokenizer.encode(text)]) for text in (CLEAN, CORRUPTED)]
        _HANDLES[name] = (handle, *ids)
    return _HANDLES[name]


@contextmanager
def residual_replaced(handle, layer: int, position: int, value: torch.Tensor):
    """While open, layer ``layer`` receives ``value`` [d_model] as its input at ``position`` (a test-only hook)."""
    def replace(module, args, kwargs):
        if args:
            hidden = args[0].clone()
            hidden[:, position] = value
            return (hidden, *args[1:]), kwargs
        hidden = kwargs["hidden_states"].clone()
        hidden[:, position] = value
        return args, {**kwargs, "hidden_states": hidden}

    hook = handle.parts.layers[layer].register_forward_pre_hook(replace, with_kwargs=True)
    try:
        yield
    finally:
        hook.remove()


def oracle_value(handle, runs, ids) -> float:
    """The metric on the model's own forward (with whatever hook is open)."""
    return float(metric_values(model_output(handle, ids)[:, -1:], runs.metric, runs.clean_log_probs)[0])


@pytest.mark.parametrize("name", CAUSAL)
def test_sanity_identities(name):
    handle, clean, corrupted = family_case(name)
    runs = prepare_runs(handle, clean, corrupted, PatchingMetric("logit_diff"))
    n_layers, n_heads, last = handle.info.n_layers, handle.info.n_heads, clean.shape[1] - 1
    up_to = [tuple((layer, head) for layer in range(top + 1) for head in range(n_heads)) for top in range(n_layers)]
    patches = [Patch(residual_layer=0), Patch(), *(Patch(heads=heads, residual_layer=0) for heads in up_to),
               *(Patch(heads=heads, residual_layer=0, positions=(last,)) for heads in up_to)]
    for direction, clean_end in (("denoise", 1.0), ("noise", 0.0)):
        effect = runs.baseline.normalise(patched_values(handle, runs, patches, direction))
        assert effect[0] == pytest.approx(clean_end, abs=ATOL)  # the embeddings at every position: the clean run
        assert effect[1] == pytest.approx(1.0 - clean_end, abs=ATOL)  # nothing patched: the base run
        np.testing.assert_allclose(effect[2:2 + n_layers], clean_end, atol=ATOL)
        # At the last position (no later position reads it), the embedding and every head of layers 0…l
        # equal the residual stream leaving layer l, i.e. entering l + 1; leaving the last layer is the clean run.
        stream = residual_patching(handle, clean, corrupted, runs.metric, direction).set_index(["layer", "position"])
        leaving = [stream.loc[(layer + 1, last), "effect"] for layer in range(n_layers - 1)] + [clean_end]
        np.testing.assert_allclose(effect[2 + n_layers:], leaving, atol=ATOL)
        assert abs(leaving[0] - (1.0 - clean_end)) > 1e-3, "layer 0's heads at the last position should matter"


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_head_grid_is_exact_and_equals_the_hook_oracle(name, direction):
    handle, clean, corrupted = family_case(name)
    metric = PatchingMetric("logit_diff")
    fast = head_patching(handle, clean, corrupted, metric, direction)
    naive = head_patching_naive(handle, clean, corrupted, metric, direction)
    assert list(fast.columns[:4]) == ["head", "layer", "head_index", "effect"] and len(fast) == 8
    np.testing.assert_allclose(fast["effect"], naive["effect"], atol=ATOL)
    assert fast["effect"].std() > 1e-3, "heads should differ"
    runs = prepare_runs(handle, clean, corrupted, metric)
    base, source = runs.base(direction), runs.source(direction)
    for layer, head in [(0, 1), (1, 3)]:
        with head_replaced(handle, layer, head, source.head_outputs[layer][:, head]):
            expected = runs.baseline.normalise(oracle_value(handle, runs, base.ids))
        assert fast.set_index("head").loc[f"L{layer}H{head}", "effect"] == pytest.approx(expected, abs=ATOL)


@pytest.mark.parametrize("name", CAUSAL)
def test_residual_grid_equals_the_hook_oracle(name):
    handle, clean, corrupted = family_case(name)
    metric = PatchingMetric("logprob")
    runs = prepare_runs(handle, clean, corrupted, metric)
    grid = residual_patching(handle, clean, corrupted, metric).set_index(["layer", "position"])
    assert len(grid) == handle.info.n_layers * clean.shape[1]
    for layer, position in [(0, 19), (1, 20), (1, clean.shape[1] - 1)]:
        with residual_replaced(handle, layer, position, runs.clean.residuals[layer][0, position]):
            expected = oracle_value(handle, runs, corrupted)
        # Raw values: normalising divides float32 noise by the clean − corrupted gap, which is only 1.4e-3 for
        # qwen2's log-prob here (2.4e-7 of noise became 1.7e-4 of effect).
        assert grid.loc[(layer, position), "value"] == pytest.approx(expected, abs=RAW_ATOL)
    # before the first differing token both runs are identical, so patching there changes nothing
    assert np.abs(grid.query("position < @FIRST_DIFFERENCE")["effect"]).max() < ATOL
    assert grid.loc[(0, 19), ["clean_token", "corrupted_token"]].tolist() == ["m", "h"]


@pytest.mark.parametrize("name", ["llama", "gpt2", "gemma3"])
def test_head_position_grid(name):
    handle, clean, corrupted = family_case(name)
    metric = PatchingMetric("kl")
    grid = head_position_patching(handle, clean, corrupted, metric, [(1, 2), (0, 3)])
    assert list(grid["head"].unique()) == ["L1H2", "L0H3"] and len(grid) == 2 * clean.shape[1]
    heads = head_patching(handle, clean, corrupted, metric).set_index("head")["effect"]
    last_layer = grid[grid["head"] == "L1H2"]["effect"].to_numpy()
    # a last-layer head's output reaches the logits only at the last position
    np.testing.assert_allclose(last_layer[:-1], 0.0, atol=ATOL)
    assert last_layer[-1] == pytest.approx(heads["L1H2"], abs=ATOL)
    first_layer = grid[grid["head"] == "L0H3"]["effect"].to_numpy()
    np.testing.assert_allclose(first_layer[:FIRST_DIFFERENCE], 0.0, atol=ATOL)  # identical z before the change


@pytest.mark.parametrize("name", CAUSAL)
def test_attribution_is_the_derivative_of_the_exact_patch(name):
    """The linear estimate equals a finite difference of a partial patch: z + ε·(z_source − z), ε → 0."""
    handle, clean, corrupted = family_case(name)
    metric = PatchingMetric("logit_diff")
    estimate = attribution_patching(handle, clean, corrupted, metric).set_index("head")
    runs = prepare_runs(handle, clean, corrupted, metric)
    info, epsilon = handle.info, 1e-2
    rows = [[HeadIntervention(layer, head, "resample", 1.0 - sign * epsilon)] for layer in range(info.n_layers)
            for head in range(info.n_heads) for sign in (1, -1)]
    edits = compile_edits(rows, info.n_layers, info.n_heads, EditBases(source=runs.clean.head_outputs))
    values = metric_values(run_with_cache(handle, corrupted, edits=edits, last_logits=1).logits, runs.metric,
                           runs.clean_log_probs).double().numpy().reshape(-1, 2)
    slope = (values[:, 0] - values[:, 1]) / (2 * epsilon)  # dM/dε at ε = 0, per head
    predicted = runs.baseline.normalise(runs.baseline.corrupted + slope)
    np.testing.assert_allclose(estimate["effect"].to_numpy(), predicted, atol=2e-3)
    assert np.abs(estimate["effect"]).max() > 1e-2


def test_progress_counts_patches_and_a_raising_callback_stops_the_work():
    handle, clean, corrupted = family_case("llama")
    calls: list[tuple[int, int]] = []
    head_patching(handle, clean, corrupted, PatchingMetric(), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (8, 8) and [done for done, _ in calls] == sorted(done for done, _ in calls)

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        calls.append((done, total))
        raise Cancelled

    calls.clear()
    with pytest.raises(Cancelled):
        head_patching(handle, clean, corrupted, PatchingMetric(), progress=cancel)
    assert len(calls) == 1 and calls[0][0] < 8


def test_bad_inputs_give_clear_errors(tiny_bert_handle):
    handle, clean, corrupted = family_case("llama")
    longer = torch.tensor([handle.tokenizer.encode(CORRUPTED + "!")])
    with pytest.raises(PatchingError, match=r"same token length.*23 tokens.*24(?s:.*)Clean: t \| h \| e"):
        head_patching(handle, clean, longer, PatchingMetric())
    with pytest.raises(MetricError, match="same metric value"):
        head_patching(handle, clean, clean, PatchingMetric())
    with pytest.raises(MetricError, match="same token"):
        head_patching(handle, clean, corrupted, PatchingMetric("logit_diff", 5, 5))
    with pytest.raises(PatchingError, match="denoise or noise"):
        head_patching(handle, clean, corrupted, PatchingMetric(), direction="sideways")
    with pytest.raises(PatchingError, match="L7H0 is outside"):
        head_position_patching(handle, clean, corrupted, PatchingMetric(), [(7, 0)])
    with pytest.raises(MetricError, match="Unknown patching metric"):
        PatchingMetric("loss")
    ids = torch.tensor([[2, 9, 10, 3]])
    with pytest.raises(PatchingError, match="needs a causal language model"):
        head_patching(tiny_bert_handle, ids, ids, PatchingMetric())
