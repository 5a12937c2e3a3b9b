"""The head census cached per (model, text, token cap, probe), shared by every session."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.methods.census import LabelThresholds, head_census, label_heads, threshold_names
from components.caches.models import cached_model


@st.cache_data(max_entries=32, show_spinner=False)
def cached_census(model: str, text: str, max_tokens: int, probe_length: int, seed: int) -> pd.DataFrame:
    """Every head's scores (labelled with the default thresholds; pages relabel with the user's)."""
    return head_census(cached_model(model), text, probe_length=probe_length, seed=seed, max_tokens=max_tokens)


def state_thresholds(state: dict) -> LabelThresholds:
    """The label thresholds of the URL state (census sliders)."""
    return LabelThresholds(**{name: state[f"th_{name}"] for name in threshold_names()})


def state_census(state: dict) -> pd.DataFrame:
    """The census of the state's model, text and probe, labelled with the state's thresholds (one spinner)."""
    with st.spinner("Scoring every head on your text and on the induction probe…"):
        census = cached_census(state["model"], state["text"], int(state["max_tokens"]), int(state["probe_len"]),
                               int(state["probe_seed"]))
    return label_heads(census, state_thresholds(state))
