"""The weight-based scores of a model cached per model name (prompt-free), shared by every session."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.methods.weight_scores import circuits, composition_scores, ov_top_pairs, weight_notes, weight_scores, \
    weights_available
from components.caches.models import cached_model


@st.cache_data(max_entries=8, show_spinner="Reading every head's weights (copying and successor scores)…")
def cached_weight_scores(model: str) -> pd.DataFrame:
    """Copying, MAPS copying and successor score of every head."""
    return weight_scores(cached_model(model))


@st.cache_data(max_entries=8, show_spinner=False)
def cached_weight_notes(model: str) -> tuple[str, ...]:
    """What the weight-based scores leave out for this model, or why they are unavailable."""
    return weight_notes(cached_model(model))


@st.cache_data(max_entries=8, show_spinner=False)
def cached_weights_available(model: str) -> bool:
    """True if the model's per-head weights can be read."""
    return weights_available(cached_model(model))


@st.cache_data(max_entries=24, show_spinner="Composition scores between every pair of heads…")
def cached_composition(model: str, kind: str) -> pd.DataFrame:
    """Every (earlier head → later head) composition score of one kind, with its random baseline."""
    return composition_scores(cached_model(model), kind)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_top_pairs(model: str, layer: int, head: int, k: int) -> pd.DataFrame:
    """The head's strongest (read → written) token pairs over the vocabulary sample."""
    return ov_top_pairs(cached_model(model), layer, head, k)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_token_writes(model: str, layer: int, head: int, token_id: int) -> pd.DataFrame:
    """What the head writes when it attends to the token (promoted and suppressed tokens)."""
    return circuits(cached_model(model)).token_writes(layer, head, token_id)


@st.cache_data(max_entries=256, show_spinner=False)
def cached_query_keys(model: str, layer: int, head: int, token_id: int) -> pd.DataFrame:
    """The key tokens the query token scores highest and lowest under the head's W_QK."""
    return circuits(cached_model(model)).query_keys(layer, head, token_id)
