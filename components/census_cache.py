"""The head census cached per (model, text, token cap, probe), shared by every session."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.methods.census import head_census
from components.cache import cached_model


@st.cache_data(max_entries=32, show_spinner=False)
def cached_census(model: str, text: str, max_tokens: int, probe_length: int, seed: int) -> pd.DataFrame:
    """Every head's scores (labelled with the default thresholds; pages relabel with the user's)."""
    return head_census(cached_model(model), text, probe_length=probe_length, seed=seed, max_tokens=max_tokens)
