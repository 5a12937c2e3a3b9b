"""Process-wide caches for importance and the ablation lab, keyed by (model, text, token cap, options).

Clean runs (the residual stream of a text) and ablation results go under the one memory budget
(``analysis.memory_budget``); the small tables stay in Streamlit's caches.

The exact all-heads ablation runs as a background job (``components.panels.page_jobs``), not here.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st
import torch

from analysis.memory_budget import memoise, shared_cache
from analysis.methods.ablation import AblationResult, CleanRun, ablate, clean_run, greedy_generate
from analysis.methods.importance import gradient_importance
from analysis.methods.metrics import Metric
from analysis.runtime.interventions import HeadIntervention
from components.caches.models import cached_model, input_ids

MetricKey = tuple[str, int, int, int | None]  # name, span start, span end, target id
Selection = tuple[HeadIntervention, ...]  # the lab's selection, parsed once; hashable, so it keys the caches


def _metric(key: MetricKey) -> Metric:
    name, start, end, target_id = key
    return Metric(name, (start, end), target_id)


@memoise
def cached_clean_run(model: str, text: str, max_tokens: int) -> CleanRun:
    """The clean run every ablation of this text is compared with (read-only, shared)."""
    return clean_run(cached_model(model), input_ids(model, text, max_tokens))


def _source_ids(model: str, selection: Selection, source_text: str, max_tokens: int) -> torch.Tensor | None:
    """The second text's ids when the selection resamples a head, else None (nothing to run)."""
    resamples = any(edit.mode == "resample" for edit in selection)
    return input_ids(model, source_text, max_tokens) if resamples and source_text.strip() else None


@memoise
def cached_ablation(model: str, text: str, max_tokens: int, selection: Selection, metric: MetricKey,
                    source_text: str = "") -> AblationResult:
    """The lab's results for a selection, keyed by its value ("resample" heads take ``source_text``'s outputs)."""
    return ablate(cached_model(model), input_ids(model, text, max_tokens), list(selection),
                  clean=cached_clean_run(model, text, max_tokens), metric=_metric(metric),
                  source_ids=_source_ids(model, selection, source_text, max_tokens))


def streamed_generation(model: str, text: str, max_tokens: int, selection: Selection, n_tokens: int,
                        source_text: str, show: Callable[[str], object]) -> str:
    """The greedy continuation with the selection applied (() = clean), from the shared cache or generated now
    (under a note in ``show`` while it runs), then passed to ``show``."""
    key = ("lab generation", model, text, max_tokens, selection, n_tokens, source_text)
    continuation = shared_cache().get(key)
    if continuation is None:
        show(f"Generating {n_tokens} tokens…")
        handle = cached_model(model)
        continuation = handle.tokenizer.decode(greedy_generate(
            handle, input_ids(model, text, max_tokens), list(selection), n_tokens,
            source_ids=_source_ids(model, selection, source_text, max_tokens)))
        shared_cache().put(key, continuation)
    show(continuation)
    return continuation


@st.cache_data(max_entries=64, show_spinner="Computing gradient importance (one forward and one backward)…")
def cached_gradient(model: str, text: str, max_tokens: int, metric: MetricKey, mode: str) -> pd.DataFrame:
    """Gradient importance of every head."""
    return gradient_importance(cached_model(model), input_ids(model, text, max_tokens), _metric(metric), mode)
