"""Process-wide caches for importance and the ablation lab, keyed by (model, text, token cap, options).

The exact all-heads ablation reports progress while it runs, which ``st.cache_data`` cannot replay,
so its results live in a small bounded store held by ``st.cache_resource``.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable

import pandas as pd
import streamlit as st
import torch

from analysis.methods.ablation import AblationResult, CleanRun, ablate, clean_run, greedy_generate
from analysis.methods.ablation_spec import parse_ablation
from analysis.methods.importance import Progress, ablation_importance, gradient_importance
from analysis.methods.metrics import Metric
from components.cache import cached_model, cached_trace

MetricKey = tuple[str, int, int, int | None]  # name, span start, span end, target id


def _metric(key: MetricKey) -> Metric:
    name, start, end, target_id = key
    return Metric(name, (start, end), target_id)


def input_ids(model: str, text: str, max_tokens: int) -> torch.Tensor:
    """The token ids [1, tokens] the trace analysed."""
    return torch.from_numpy(cached_trace(model, text, max_tokens).token_ids.copy())[None]


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_clean_run(model: str, text: str, max_tokens: int) -> CleanRun:
    """The clean run every ablation of this text is compared with (read-only, shared)."""
    return clean_run(cached_model(model), input_ids(model, text, max_tokens))


def _source_ids(model: str, spec: str, source_text: str, max_tokens: int) -> torch.Tensor | None:
    """The second text's ids when the selection resamples a head, else None (nothing to run)."""
    return input_ids(model, source_text, max_tokens) if ":resample" in spec and source_text.strip() else None


@st.cache_data(max_entries=256, show_spinner=False)
def cached_ablation(model: str, text: str, max_tokens: int, spec: str, metric: MetricKey,
                    source_text: str = "") -> AblationResult:
    """The lab's results for a normalised selection string ("resample" heads take ``source_text``'s outputs)."""
    handle = cached_model(model)
    interventions = parse_ablation(spec, handle.info.n_layers, handle.info.n_heads)
    return ablate(handle, input_ids(model, text, max_tokens), interventions,
                  clean=cached_clean_run(model, text, max_tokens), metric=_metric(metric),
                  source_ids=_source_ids(model, spec, source_text, max_tokens))


@st.cache_data(max_entries=256, show_spinner=False)
def cached_generation(model: str, text: str, max_tokens: int, spec: str, n_tokens: int, source_text: str = "") -> str:
    """The greedy continuation with the selection applied ('' selection = clean)."""
    handle = cached_model(model)
    interventions = parse_ablation(spec, handle.info.n_layers, handle.info.n_heads)
    new_ids = greedy_generate(handle, input_ids(model, text, max_tokens), interventions, n_tokens,
                              source_ids=_source_ids(model, spec, source_text, max_tokens))
    return handle.tokenizer.decode(new_ids)


@st.cache_data(max_entries=64, show_spinner="Computing gradient importance (one forward and one backward)…")
def cached_gradient(model: str, text: str, max_tokens: int, metric: MetricKey, mode: str) -> pd.DataFrame:
    """Gradient importance of every head."""
    return gradient_importance(cached_model(model), input_ids(model, text, max_tokens), _metric(metric), mode)


class _BoundedStore:
    """A thread-safe least-recently-used dict."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: Hashable, value) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)


@st.cache_resource
def _exact_store() -> _BoundedStore:
    return _BoundedStore(64)


def cached_exact_importance(model: str, text: str, max_tokens: int, metric: MetricKey,
                            mode: str) -> pd.DataFrame | None:
    """Exact ablation importance if it was computed before, else None."""
    return _exact_store().get((model, text, max_tokens, metric, mode))


def exact_importance(model: str, text: str, max_tokens: int, metric: MetricKey, mode: str,
                     progress: Progress | None = None) -> pd.DataFrame:
    """Exact ablation importance of every head (computed once per key, reporting progress)."""
    key = (model, text, max_tokens, metric, mode)
    frame = _exact_store().get(key)
    if frame is None:
        frame = ablation_importance(cached_model(model), input_ids(model, text, max_tokens), _metric(metric), mode,
                                    progress)
        _exact_store().put(key, frame)
    return frame

