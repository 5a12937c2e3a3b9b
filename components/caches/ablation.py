"""Process-wide caches for importance and the ablation lab, keyed by (model, text, token cap, options).

Clean runs (the residual stream of a text) and ablation results go under the one memory budget
(``analysis.memory_budget``); the small tables stay in Streamlit's caches.

The exact all-heads ablation runs as a background job (``components.panels.page_jobs``), not here.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch

from analysis.memory_budget import memoise
from analysis.methods.ablation import AblationResult, CleanRun, ablate, clean_run, greedy_generate
from analysis.methods.ablation_spec import parse_ablation
from analysis.methods.importance import gradient_importance
from analysis.methods.metrics import Metric
from components.caches.models import cached_model, input_ids

MetricKey = tuple[str, int, int, int | None]  # name, span start, span end, target id


def _metric(key: MetricKey) -> Metric:
    name, start, end, target_id = key
    return Metric(name, (start, end), target_id)


@memoise
def cached_clean_run(model: str, text: str, max_tokens: int) -> CleanRun:
    """The clean run every ablation of this text is compared with (read-only, shared)."""
    return clean_run(cached_model(model), input_ids(model, text, max_tokens))


def _source_ids(model: str, spec: str, source_text: str, max_tokens: int) -> torch.Tensor | None:
    """The second text's ids when the selection resamples a head, else None (nothing to run)."""
    return input_ids(model, source_text, max_tokens) if ":resample" in spec and source_text.strip() else None


@memoise
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
