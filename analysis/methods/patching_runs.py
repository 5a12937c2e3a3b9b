"""The two runs activation patching swaps between, and patched runs on the Atlas engine.

A *patch* takes some activations of a *source* run into a *base* run of a prompt of the same token length:
query heads' outputs z (the site ``head_output``, as a "resample" edit, ``analysis.runtime.interventions``) and
the residual stream entering a layer, at every position or at chosen ones. Denoising runs the corrupted prompt
with activations from the clean run; noising runs the clean prompt with activations from the corrupted run.

Nothing below the first patched layer changes, so a patched run restarts from the base run's residual stream
there (``start_layer``/``start_residual``; a patched stream is a ``resid_pre`` site edit), and the patches that
start at the same layer share one batched call, one batch row each.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Callable, Sequence

import numpy as np
import torch

from analysis.methods.metrics import MetricError
from analysis.methods.patching_metric import Baseline, PatchingMetric, metric_values, resolve_metric
from analysis.runtime.cache import ActivationCache
from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import EditBases, Edits, EditTensors, HeadIntervention, SiteEdit, compile_edits
from analysis.runtime.tokens import display_token, token_strings

DIRECTIONS: dict[str, str] = {
    "denoise": "denoise: corrupted run, activation from the clean run",
    "noise": "noise: clean run, activation from the corrupted run",
}
ROW_BUDGET = 2 ** 24  # activation elements per batched call (64 MB of float32 per tensor)

Progress = Callable[[int, int], None]


class PatchingError(ValueError):
    """Patching cannot run: an encoder, prompts of different lengths, a model whose heads cannot be edited."""


@dataclass(frozen=True, eq=False)
class PromptRun:
    """One unpatched run, with what patches take from it."""

    ids: torch.Tensor  # [1, tokens]
    cache: ActivationCache  # keeps resid_pre and head_output of every layer

    @property
    def residuals(self) -> tuple[torch.Tensor, ...]:
        """The stream entering each layer, [1, tokens, d_model]."""
        return tuple(self.cache.stack("resid_pre"))

    @property
    def head_outputs(self) -> tuple[torch.Tensor, ...]:
        """Per layer: z [tokens, heads, head_dim] (what "resample" edits take)."""
        return tuple(self.cache.stack("head_output")[:, 0])

    @property
    def last_logits(self) -> torch.Tensor:
        """[vocab]: next-token logits at the last position."""
        return self.cache.logits[0, -1]


@dataclass(frozen=True, eq=False)
class PatchingRuns:
    """The clean and corrupted runs, the resolved metric and its values on both (read-only, shareable)."""

    clean: PromptRun
    corrupted: PromptRun
    metric: PatchingMetric  # with target and distractor resolved
    baseline: Baseline
    clean_log_probs: torch.Tensor  # [vocab], for KL

    def base(self, direction: str) -> PromptRun:
        """The run that is patched: corrupted when denoising, clean when noising."""
        return self.corrupted if check_direction(direction) == "denoise" else self.clean

    def source(self, direction: str) -> PromptRun:
        """The run activations are taken from."""
        return self.clean if check_direction(direction) == "denoise" else self.corrupted

    @property
    def n_tokens(self) -> int:
        """Token length of both prompts."""
        return self.clean.ids.shape[1]


@dataclass(frozen=True)
class Patch:
    """One patched run: these sites take the source run's values, everything else is the base run.

    ``heads``: (layer, head) pairs whose output z is taken; ``residual_layer``: also take the residual stream
    entering that layer (at most the lowest patched head's layer); ``positions``: where (None: everywhere).
    """

    heads: tuple[tuple[int, int], ...] = ()
    residual_layer: int | None = None
    positions: tuple[int, ...] | None = None

    @property
    def start_layer(self) -> int:
        """The first layer whose input differs from the base run."""
        layers = [layer for layer, _ in self.heads]
        if self.residual_layer is not None:
            if layers and min(layers) < self.residual_layer:
                raise ValueError("A patch's residual layer must be at or below every patched head's layer.")
            return self.residual_layer
        return min(layers) if layers else 0


def check_direction(direction: str) -> str:
    """The direction if it is 'denoise' or 'noise'; raises PatchingError otherwise."""
    if direction not in DIRECTIONS:
        raise PatchingError(f"Unknown direction '{direction}'; use denoise or noise.")
    return direction


def check_patchable(handle: ModelHandle) -> None:
    """Raise PatchingError with the reason unless patching can run on this model."""
    info = handle.info
    if not info.causal:
        raise PatchingError(f"Activation patching needs a causal language model: it measures the next-token "
                            f"prediction at the last position, and {info.name} is an encoder without one.")
    if not info.supports_interventions:
        raise PatchingError(" ".join(info.notes) or f"{info.name}'s heads cannot be edited.")


def tokenisation(handle: ModelHandle, ids: torch.Tensor) -> str:
    """The tokens of ``ids`` [1, tokens] as 'When | ␣Mary | …'."""
    return " | ".join(display_token(token) for token in token_strings(handle.tokenizer, ids[0]))


def check_lengths(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor) -> None:
    """Raise PatchingError showing both tokenisations unless the prompts have the same token length."""
    clean, corrupted = clean_ids.shape[1], corrupted_ids.shape[1]
    if clean != corrupted:
        raise PatchingError(f"Patching needs a clean and a corrupted prompt of the same token length: the clean "
                            f"prompt has {clean} tokens, the corrupted prompt {corrupted}.\n\n"
                            f"Clean: {tokenisation(handle, clean_ids)}\n\n"
                            f"Corrupted: {tokenisation(handle, corrupted_ids)}")


def _prompt_run(handle: ModelHandle, ids: torch.Tensor) -> PromptRun:
    return PromptRun(ids, run_with_cache(handle, ids, sites=("resid_pre", "head_output"), last_logits=1))


def prepare_runs(handle: ModelHandle, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor,
                 metric: PatchingMetric) -> PatchingRuns:
    """Run both prompts once, resolve the metric's default tokens and compute its clean and corrupted values."""
    check_patchable(handle)
    check_lengths(handle, clean_ids, corrupted_ids)
    clean, corrupted = _prompt_run(handle, clean_ids), _prompt_run(handle, corrupted_ids)
    for name, token_id in (("target", metric.target_id), ("distractor", metric.distractor_id)):
        if token_id is not None and not 0 <= token_id < clean.last_logits.shape[-1]:
            raise MetricError(f"The {name} token id {token_id} is outside the vocabulary.")
    metric = resolve_metric(metric, clean.last_logits, corrupted.last_logits)
    clean_log_probs = torch.log_softmax(clean.last_logits.float(), dim=-1)
    both = metric_values(torch.stack([clean.last_logits, corrupted.last_logits])[:, None], metric, clean_log_probs)
    return PatchingRuns(clean, corrupted, metric, Baseline(float(both[0]), float(both[1])), clean_log_probs)


def rows_per_call(handle: ModelHandle, n_tokens: int) -> int:
    """How many patched runs fit in one batched call (activations of every row stay under ROW_BUDGET)."""
    info = handle.info
    per_row = n_tokens * (4 * info.d_model + info.n_heads * n_tokens)
    return max(1, ROW_BUDGET // per_row)


def patch_edits(handle: ModelHandle, patches: Sequence[Patch], source: PromptRun, n_tokens: int) -> EditTensors:
    """The head patches of these rows as "resample" edits from the source run, limited to their positions."""
    rows = [[HeadIntervention(layer, head, "resample", 0.0) for layer, head in patch.heads] for patch in patches]
    positions = None
    if any(patch.positions is not None for patch in patches):
        positions = torch.ones(len(patches), n_tokens, dtype=torch.bool)
        for row, patch in enumerate(patches):
            if patch.positions is not None:
                positions[row] = False
                positions[row, list(patch.positions)] = True
    return compile_edits(rows, handle.info.n_layers, handle.info.n_heads, EditBases(source=source.head_outputs),
                         positions)


def _patched_logits(handle: ModelHandle, patches: Sequence[Patch], base: PromptRun, source: PromptRun,
                    start: int) -> torch.Tensor:
    """Last-position logits of patched runs that all start at layer ``start``, as one batched call."""
    streams = [SiteEdit("resid_pre", patch.residual_layer, source.cache["resid_pre", patch.residual_layer]
                        [:, list(patch.positions) if patch.positions is not None else slice(None)],
                        positions=patch.positions, rows=(row,))
               for row, patch in enumerate(patches) if patch.residual_layer is not None]
    edits = Edits(patch_edits(handle, patches, source, base.ids.shape[1]), tuple(streams))
    return run_with_cache(handle, base.ids, edits=edits, start_layer=start,
                          start_residual=base.cache["resid_pre", start], last_logits=1).logits


def patched_values(handle: ModelHandle, runs: PatchingRuns, patches: Sequence[Patch], direction: str = "denoise",
                   progress: Progress | None = None) -> np.ndarray:
    """The metric's raw value for each patch, grouped by start layer and batched.

    ``progress(done, total)`` is called after each batched call with the number of patches done; if it
    raises, the computation stops there.
    """
    base, source = runs.base(direction), runs.source(direction)
    values = np.zeros(len(patches))
    order = sorted(range(len(patches)), key=lambda index: patches[index].start_layer)
    chunk = rows_per_call(handle, runs.n_tokens)
    done = 0
    for start, group in groupby(order, key=lambda index: patches[index].start_layer):
        indices = list(group)
        for first in range(0, len(indices), chunk):
            rows = indices[first:first + chunk]
            logits = _patched_logits(handle, [patches[index] for index in rows], base, source, start)
            values[rows] = metric_values(logits, runs.metric, runs.clean_log_probs).cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, len(patches))
    return values
