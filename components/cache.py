"""Process-wide caches: one model instance per name and a bounded set of traces, shared by all sessions."""
from __future__ import annotations

import streamlit as st

from analysis.runtime.handle import ModelHandle
from analysis.runtime.loading import load_model
from analysis.runtime.trace import Trace, run_trace


@st.cache_resource(max_entries=3, show_spinner="Loading the model (first load of a GGUF model takes ~20 s)…")
def cached_model(name: str) -> ModelHandle:
    """Load a model once per process. Raises ModelLoadError (not cached) on failure."""
    return load_model(name)


@st.cache_resource(max_entries=64, show_spinner="Running the model…")
def cached_trace(model_name: str, text: str, max_tokens: int) -> Trace:
    """One run of a text (read-only arrays, shared between sessions)."""
    return run_trace(cached_model(model_name), text, max_tokens=max_tokens)
