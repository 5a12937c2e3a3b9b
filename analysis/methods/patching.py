"""Activation patching: which heads and which positions carry the information behind a behaviour.

Two prompts of the same token length — clean (the model answers X) and corrupted (it answers Y) — are run, and
activations of one run are swapped into the other (Vig et al. 2020; Meng et al. 2022, causal tracing; Wang et al.
2022, the IOI circuit; Heimersheim & Nanda 2024 and Zhang & Nanda 2024 on how to use and read it):

- ``head_patching``: every query head's output z, one head at a time, at every position — a layer × head grid;
- ``head_position_patching``: chosen heads, one position at a time — a head × position grid;
- ``residual_patching``: the whole residual stream entering a layer at one position — a layer × position grid
  (the causal-tracing picture);
- ``attribution_patching`` (Nanda 2023; Syed et al. 2023): the linear estimate (z_source − z_base)·∂M/∂z for
  every head from two forwards and one backward. It is a first-order Taylor estimate and fails where the
  metric is far from linear in a head's output, e.g. when attention saturates (Kramár et al. 2024, AtP*); KL
  has zero gradient at the clean run, so noising estimates of KL are all zero.

Denoising patches the corrupted run with clean activations (is this head *sufficient* to restore the answer?);
noising patches the clean run with corrupted activations (is it *necessary*?). The effect is normalised so
that 0 = the corrupted run and 1 = the clean run in both directions (``analysis.methods.patching_metric``).
Results are DataFrames with one row per head (``head``, ``layer``, ``head_index``) or per (layer or head,
position), with ``effect`` (normalised) and ``value`` (the raw metric).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label, heads_frame
from analysis.methods.patching_metric import PATCHING_METRICS, PatchingMetric, metric_values
from analysis.methods.patching_runs import DIRECTIONS, Patch, PatchingError, PatchingRuns, Progress, \
    patch_edits, patched_values, prepare_runs
from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import EditBases, gate_edits
from analysis.runtime.tokens import token_strings

__all__ = ["DIRECTIONS", "PATCHING_METRICS", "PatchingError", "PatchingMetric", "attribution_patching",
           "head_patching", "head_patching_naive", "head_position_patching", "residual_patching"]


def _head_frame(handle: ModelHandle, runs: PatchingRuns, values: np.ndarray) -> pd.DataFrame:
    info = handle.info
    return heads_frame(info.n_layers, info.n_heads, effect=runs.baseline.normalise(values), value=values)


def head_patching(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                  metric: PatchingMetric, direction: str = "denoise", progress: Progress | None = None
                  ) -> pd.DataFrame:
    """Patch each head's output z alone (every position), exactly; one row per head.

    Heads of layer l restart from the base run's residual stream entering l and share a batched call.
    ``progress(done, total)`` counts heads; if it raises, the computation stops. Columns: head, layer,
    head_index, effect (0 = corrupted run, 1 = clean run), value (the raw metric).
    """
    runs = prepare_runs(handle, clean_ids, corrupted_ids, metric)
    info = handle.info
    patches = [Patch(heads=((layer, head),)) for layer in range(info.n_layers) for head in range(info.n_heads)]
    return _head_frame(handle, runs, patched_values(handle, runs, patches, direction, progress))


def head_patching_naive(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                        metric: PatchingMetric, direction: str = "denoise") -> pd.DataFrame:
    """The reference ``head_patching`` must equal: one full forward per head, no restart, no batching."""
    runs = prepare_runs(handle, clean_ids, corrupted_ids, metric)
    info = handle.info
    base = runs.base(direction)
    values = np.zeros(info.n_total_heads)
    for index in range(info.n_total_heads):
        patch = Patch(heads=(divmod(index, info.n_heads),))
        edits = patch_edits(handle, [patch], runs.source(direction), runs.n_tokens)
        logits = run_with_cache(handle, base.ids, edits=edits, last_logits=1).logits
        values[index] = float(metric_values(logits, runs.metric, runs.clean_log_probs)[0])
    return _head_frame(handle, runs, values)


def _position_frame(handle: ModelHandle, runs: PatchingRuns, keys: pd.DataFrame, values: np.ndarray
                    ) -> pd.DataFrame:
    frame = keys.copy()
    for column, run in (("clean_token", runs.clean), ("corrupted_token", runs.corrupted)):
        tokens = token_strings(handle.tokenizer, run.ids[0])
        frame[column] = [tokens[position] for position in frame["position"]]
    frame["effect"] = runs.baseline.normalise(values)
    frame["value"] = values
    return frame


def head_position_patching(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                           metric: PatchingMetric, heads: list[tuple[int, int]], direction: str = "denoise",
                           progress: Progress | None = None) -> pd.DataFrame:
    """Patch each chosen head's output at one position at a time; one row per (head, position).

    Columns: head, layer, head_index, position, clean_token, corrupted_token, effect, value.
    """
    runs = prepare_runs(handle, clean_ids, corrupted_ids, metric)
    heads = list(dict.fromkeys(heads))
    if not heads:
        raise PatchingError("Pick at least one head to patch position by position, e.g. L23H0.")
    info = handle.info
    for layer, head in heads:
        if not (0 <= layer < info.n_layers and 0 <= head < info.n_heads):
            raise PatchingError(f"{head_label(layer, head)} is outside this model "
                                f"({info.n_layers} layers × {info.n_heads} heads).")
    keys = pd.DataFrame([(head_label(layer, head), layer, head, position) for layer, head in heads
                         for position in range(runs.n_tokens)], columns=["head", "layer", "head_index", "position"])
    patches = [Patch(heads=((row.layer, row.head_index),), positions=(row.position,)) for row in keys.itertuples()]
    return _position_frame(handle, runs, keys, patched_values(handle, runs, patches, direction, progress))


def residual_patching(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                      metric: PatchingMetric, direction: str = "denoise", progress: Progress | None = None
                      ) -> pd.DataFrame:
    """Patch the whole residual stream entering each layer at one position; one row per (layer, position).

    Layer 0's input is the embedding. Columns: layer, position, clean_token, corrupted_token, effect, value.
    """
    runs = prepare_runs(handle, clean_ids, corrupted_ids, metric)
    keys = pd.DataFrame([(layer, position) for layer in range(handle.info.n_layers)
                         for position in range(runs.n_tokens)], columns=["layer", "position"])
    patches = [Patch(residual_layer=row.layer, positions=(row.position,)) for row in keys.itertuples()]
    return _position_frame(handle, runs, keys, patched_values(handle, runs, patches, direction, progress))


def attribution_patching(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                         metric: PatchingMetric, direction: str = "denoise") -> pd.DataFrame:
    """The linear estimate of ``head_patching`` for every head from two forwards and one backward.

    A gate ξ on every head's output rewrites it as z' = z_source + ξ·(z − z_source) (a "resample" edit), so at
    ξ = 1 the base run is unchanged and ∂M/∂ξ = ∂M/∂z · (z_base − z_source); patching the head (ξ = 0) changes
    the metric by about −∂M/∂ξ. Columns: head, layer, head_index, effect (the estimate, normalised like
    ``head_patching``), value (the estimated raw metric).
    """
    runs = prepare_runs(handle, clean_ids, corrupted_ids, metric)
    info = handle.info
    gates = torch.ones(info.n_layers, info.n_heads, requires_grad=True)
    edits = gate_edits(gates, "resample", EditBases(source=runs.source(direction).head_outputs))
    logits = run_with_cache(handle, runs.base(direction).ids, edits=edits, grad=True, last_logits=1).logits
    value = metric_values(logits, runs.metric, runs.clean_log_probs)[0]
    (gradient,) = torch.autograd.grad(value, gates)
    return _head_frame(handle, runs, float(value.detach()) - gradient.numpy())
