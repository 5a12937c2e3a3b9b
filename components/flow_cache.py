"""Process-wide caches for rollout, direct logit attribution and comparison, keyed by (model, text, cap, options)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from analysis.methods.compare import compare_models, compare_texts
from analysis.methods.logit_attribution import ResidualDecomposition, decompose
from analysis.methods.rollout import mixing_matrices, rollout
from components.cache import cached_model, cached_trace

Heads = tuple[tuple[int, int], ...] | None


@st.cache_data(max_entries=32, show_spinner=False)
def cached_rollout(model: str, text: str, max_tokens: int, heads: Heads, exclude_sink: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(mixing matrices, rollout after every layer), both [layers, tokens, tokens]."""
    attentions = cached_trace(model, text, max_tokens).attentions
    return mixing_matrices(attentions, heads, exclude_sink), rollout(attentions, heads, exclude_sink)


@st.cache_data(max_entries=64, show_spinner="Splitting the residual stream into head writes…")
def cached_decomposition(model: str, text: str, max_tokens: int, position: int) -> ResidualDecomposition:
    """The final residual stream at ``position`` split into embedding, head, bias and MLP writes."""
    ids = torch.from_numpy(cached_trace(model, text, max_tokens).token_ids.copy())[None]
    return decompose(cached_model(model), ids, position)


@st.cache_data(max_entries=64, show_spinner="Comparing every head…")
def cached_comparison(first: tuple[str, str], second: tuple[str, str], max_tokens: int) -> pd.DataFrame:
    """Heads ranked by JS distance between two (model, text) traces: two texts or two models."""
    a, b = cached_trace(*first, max_tokens), cached_trace(*second, max_tokens)
    return compare_texts(a, b) if first[0] == second[0] else compare_models(a, b)
