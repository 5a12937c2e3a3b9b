"""The Compare page's all-heads ranking, kept under the shared memory budget and computed with a progress bar
that moves layer by layer (long texts take a while: every layer's patterns are recomputed for both runs)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.memory_budget import shared_cache
from analysis.methods.compare import compare_models, compare_texts
from components.caches.models import cached_trace

Run = tuple[str, str]  # (model, text)


def ranked_heads(first: Run, second: Run, max_tokens: int) -> pd.DataFrame:
    """Heads ranked by JS distance between two runs (two texts on one model, or two models on one text).
    Raises CompareError when the runs cannot be compared."""
    key = ("compare.ranked_heads", first, second, max_tokens)
    frame = shared_cache().get(key)
    if frame is not None:
        return frame
    a, b = cached_trace(*first, max_tokens), cached_trace(*second, max_tokens)
    bar = st.progress(0.0, text="Comparing every head, one layer at a time…")
    try:
        def report(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Comparing every head: layer {done} of {total} done")

        frame = compare_texts(a, b, report) if first[0] == second[0] else compare_models(a, b, report)
    finally:
        bar.empty()
    shared_cache().put(key, frame)
    return frame
