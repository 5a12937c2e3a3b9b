"""Retrieval and streaming scores cached under the one memory budget, keyed by model and settings."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.datasets.haystack import NEEDLES
from analysis.memory_budget import memoise
from analysis.methods.lookback import generation_lookback
from analysis.methods.retrieval import DEFAULT_DEPTHS, RetrievalResult, retrieval_sweep
from analysis.methods.streaming import restrict_heads, streaming_scores
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.tokens import token_strings
from components.caches.models import cached_model, input_ids, with_spinner


@memoise(on_miss=with_spinner("Running the needle probe (a greedy answer per length × depth × needle)…"))
def cached_retrieval(model: str, lengths: tuple[int, ...], needles: int) -> RetrievalResult:
    """Retrieval scores of every head over the lengths × the default depths × the first ``needles`` needles."""
    return retrieval_sweep(cached_model(model), lengths, DEFAULT_DEPTHS, NEEDLES[:needles])


@memoise(on_miss=with_spinner("Restricting each head to sink + window keys in turn…"))
def cached_streaming(model: str, text: str, max_tokens: int, sink: int, window: int) -> pd.DataFrame:
    """Per-head loss and final-stream change when only that head sees sink + window keys."""
    return streaming_scores(cached_model(model), input_ids(model, text, max_tokens), sink, window)


@memoise
def cached_restriction(model: str, text: str, max_tokens: int, heads: tuple[tuple[int, int], ...], sink: int,
                       window: int) -> float:
    """The loss change when all ``heads`` are restricted at once."""
    return restrict_heads(cached_model(model), input_ids(model, text, max_tokens), heads, sink, window)


@memoise(on_miss=with_spinner("Reading every head's attention at each generated step…"))
def cached_lookback(model: str, text: str, max_tokens: int, selection: tuple[HeadIntervention, ...],
                    n_tokens: int) -> tuple[list[str], np.ndarray]:
    """The greedy tokens (with the lab's selection applied) and each head's lookback ratio [layers, heads, steps]."""
    handle = cached_model(model)
    generated, ratios = generation_lookback(handle, input_ids(model, text, max_tokens), n_tokens, list(selection))
    return token_strings(handle.tokenizer, generated), ratios
