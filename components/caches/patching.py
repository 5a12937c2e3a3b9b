"""Process-wide caches for activation patching, keyed by the request (model, prompts, token cap, metric, direction).

Everything lives in the process-wide cache under the one memory budget (``analysis.memory_budget``). The two
prepared runs and the attribution estimate are shown as numbered steps with their elapsed seconds while they are
computed (on a 4,096-token pair they take minutes); the exact grids are drawn with a progress bar the first time.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import pandas as pd
import streamlit as st

from analysis.memory_budget import memoise, shared_cache
from analysis.methods.patching import PatchingMetric, attribution_patching, head_patching, head_position_patching, \
    residual_patching
from analysis.methods.patching_runs import PatchingRuns, Progress, prepare_runs
from analysis.runtime.tokens import token_strings
from components.caches.models import cached_model, input_ids, with_spinner


class PatchRequest(NamedTuple):
    """Everything a patching result depends on (hashable, so it keys the caches)."""

    model: str
    clean: str
    corrupted: str
    max_tokens: int
    metric: str
    target_id: int | None
    distractor_id: int | None
    direction: str

    def arguments(self) -> tuple:
        """(handle, clean ids, corrupted ids, metric) for the ``analysis.methods.patching`` functions."""
        return (cached_model(self.model), input_ids(self.model, self.clean, self.max_tokens),
                input_ids(self.model, self.corrupted, self.max_tokens),
                PatchingMetric(self.metric, self.target_id, self.distractor_id))


class RunSummary(NamedTuple):
    """The resolved tokens and the metric on the two unpatched runs."""

    target: str
    distractor: str
    clean: float
    corrupted: float


IN_PAGE_TOKENS = 256  # the longest text whose exact grids the patching page computes itself (longer: a job)


@memoise(on_miss=with_spinner("Patching, step 1 of 2: both prompts run once more, keeping every head's output…"))
def cached_runs(request: PatchRequest) -> PatchingRuns:
    """Both prompts run once per request, shared by the summary, the estimate and every exact grid; raises
    PatchingError or MetricError with a message for people."""
    return prepare_runs(*request.arguments())


@st.cache_data(max_entries=64, show_spinner=False)
def cached_summary(request: PatchRequest) -> RunSummary:
    """The resolved tokens and the metric on both prompts."""
    runs = cached_runs(request)
    target, distractor = token_strings(cached_model(request.model).tokenizer,
                                       [runs.metric.target_id, runs.metric.distractor_id])
    return RunSummary(target, distractor, runs.baseline.clean, runs.baseline.corrupted)


@memoise(on_miss=with_spinner("Patching, step 2 of 2: the attribution estimate (two forwards with gradients, one "
                              "backward)…"))
def cached_attribution(request: PatchRequest) -> pd.DataFrame:
    """The linear estimate of every head's patching effect."""
    return attribution_patching(*request.arguments(), request.direction, runs=cached_runs(request))


def _exact(kind: str, request: PatchRequest, heads: tuple[tuple[int, int], ...]) -> Callable[[Progress], pd.DataFrame]:
    runs = cached_runs(request)
    if kind == "heads":
        return lambda progress: head_patching(*request.arguments(), request.direction, progress, runs)
    if kind == "positions":
        return lambda progress: head_position_patching(*request.arguments(), list(heads), request.direction,
                                                       progress, runs)
    return lambda progress: residual_patching(*request.arguments(), request.direction, progress, runs)


def exact_result(kind: str, request: PatchRequest, label: str, heads: tuple[tuple[int, int], ...] = ()
                 ) -> pd.DataFrame:
    """An exact grid ("heads", "positions" for ``heads``, or "residual"): from the store, or computed now with a
    progress bar labelled ``label``."""
    key = ("exact patching", kind, request, heads)
    frame = shared_cache().get(key)
    if frame is None:
        bar = st.progress(0.0, text=f"{label}…")
        frame = _exact(kind, request, heads)(lambda done, total: bar.progress(
            done / total, text=f"{label}: {done} of {total} patched runs"))
        bar.empty()
        shared_cache().put(key, frame)
    return frame
