"""Process-wide caches: one model instance per name, and every computed result under one memory budget.

Models are few and large, so Streamlit keeps up to three. Everything else (traces, patterns computed on
demand, analyses) goes through ``analysis.memory_budget``: one budget (``ATLAS_CACHE_MB``) for all of them,
evicting by size, so no sequence of requests can exhaust the machine.
"""
from __future__ import annotations

from typing import Callable, TypeVar

import numpy as np
import streamlit as st
import torch

from analysis.memory_budget import memoise
from analysis.runtime.handle import ModelHandle
from analysis.runtime.loading import load_model
from analysis.runtime.trace import Trace, run_trace

T = TypeVar("T")


def with_spinner(message: str) -> Callable[[Callable[[], T]], T]:
    """An ``on_miss`` for ``memoise`` that shows a spinner, with the seconds elapsed, while the result is computed."""
    def run(compute: Callable[[], T]) -> T:
        with st.spinner(message, show_time=True):
            return compute()
    return run


@st.cache_resource(max_entries=3, show_spinner="Loading the model (first load of a GGUF model takes ~20 s)…")
def cached_model(name: str) -> ModelHandle:
    """Load a model once per process. Raises ModelLoadError (not cached) on failure."""
    return load_model(name)


@memoise(on_miss=with_spinner("Running the model…"))
def cached_trace(model_name: str, text: str, max_tokens: int) -> Trace:
    """One run of a text (read-only arrays, shared between sessions)."""
    return run_trace(cached_model(model_name), text, max_tokens=max_tokens)


@memoise(on_miss=with_spinner("Computing the head's attention…"))
def cached_pattern(model_name: str, text: str, max_tokens: int, layer: int, head: int) -> np.ndarray:
    """One head's full pattern [query, key], recomputed from the trace's kept residual stream."""
    return cached_trace(model_name, text, max_tokens).pattern(layer, head)


@memoise(on_miss=with_spinner("Computing the layer's attention…"))
def cached_layer_patterns(model_name: str, text: str, max_tokens: int, layer: int) -> np.ndarray:
    """Every head's full pattern of one layer [heads, query, key]."""
    return cached_trace(model_name, text, max_tokens).layer_patterns(layer)


@memoise(on_miss=with_spinner("Following the token through every layer…"))
def cached_token_attention(model_name: str, text: str, max_tokens: int, position: int, direction: str
                           ) -> np.ndarray:
    """[layers, heads, tokens]: where a token looks ('from') or who looks at it ('to'), every head."""
    return cached_trace(model_name, text, max_tokens).token_attention(position, direction)


def input_ids(model: str, text: str, max_tokens: int) -> torch.Tensor:
    """The token ids [1, tokens] the trace analysed."""
    return torch.from_numpy(cached_trace(model, text, max_tokens).token_ids.copy())[None]
