"""Reference mean head outputs: what "mean ablation" replaces a head's output with.

A head's mean output over the text being analysed would let a position's result depend on tokens after it
(in a causal model) and change with every text. Instead the mean is taken once per model over a fixed
reference set — the census' induction probe (random tokens written twice) and the built-in example texts —
over every position but the first (which in most decoders is an attention sink with atypical outputs), and
cached for the life of the loaded model.
"""
from __future__ import annotations

import threading
import weakref

import torch

from analysis.datasets.probes import EXAMPLE_TEXTS, random_token_ids
from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import EditBases

REFERENCE_PROBE_LENGTH = 16
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def reference_texts(handle: ModelHandle) -> list[torch.Tensor]:
    """The token ids [1, tokens] of the reference set: the probe (if the vocabulary allows one), the example texts."""
    texts = []
    try:
        probe = random_token_ids(handle.tokenizer, REFERENCE_PROBE_LENGTH, seed=0)
        texts.append(torch.tensor([list(probe) * 2]))
    except ValueError:  # tiny test vocabularies
        pass
    for text in EXAMPLE_TEXTS.values():
        if text:
            texts.append(handle.tokenizer(text, return_tensors="pt").input_ids)
    return texts


def reference_means(handle: ModelHandle) -> torch.Tensor:
    """Mean output of every head over the reference set, [layers, heads, head_dim]; computed once per model."""
    with _lock:
        cached = _cache.get(handle)
        if cached is None:
            outputs = [run_with_cache(handle, ids, sites=("head_output",)).stack("head_output")[:, 0, 1:]
                       for ids in reference_texts(handle)]  # each [layers, tokens - 1, heads, head_dim]
            cached = torch.cat(outputs, dim=1).float().mean(dim=1)
            _cache[handle] = cached
    return cached


def mean_bases(handle: ModelHandle) -> EditBases:
    """Edit bases holding the model's reference means (for "mean" edits)."""
    return EditBases(mean=reference_means(handle))
