"""Prompt-free head scores read from the weights, one row per head, cached per loaded model.

The columns: ``copying`` (eigenvalue copying score of the direct OV circuit, Elhage et al. 2021),
``maps_copying`` (MAPS-style, Elhelo & Geva 2024) and ``successor`` (Gould et al. 2023); definitions in
``analysis.methods.ov_circuits``. Composition scores between heads (``composition_scores``) are in
``analysis.methods.composition``. Models whose weights cannot be read, and encoders (no unembedding), get NaN
columns and a note.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np
import pandas as pd

from analysis.heads import heads_frame
from analysis.methods.composition import KINDS, composition_table
from analysis.methods.ov_circuits import TOP_K, Circuits
from analysis.runtime.handle import ModelHandle
from analysis.runtime.weights import HeadWeights, WeightsUnavailable, read_head_weights

WEIGHT_SCORE_HELP: dict[str, str] = {
    "copying": "weights: Σλ/Σ|λ| of the OV circuit W_U·W_OV·W_Eᵀ, +1 copies, −1 suppresses (Elhage et al. 2021)",
    "maps_copying": f"weights: share of sampled tokens that the OV circuit maps to themselves, top-{TOP_K} "
                    "among the sample (MAPS, Elhelo & Geva 2024)",
    "successor": "weights: share of ordinal tokens (1→2, Monday→Tuesday, …) mapped to their successor first "
                 "(Gould et al. 2023)",
}
WEIGHT_SCORE_COLUMNS = tuple(WEIGHT_SCORE_HELP)

_lock = threading.RLock()  # values computed under it ask for others (scores need the circuits)
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _memo(handle: ModelHandle, key: str, compute):
    """One value per (loaded model, key), computed once even when sessions ask at the same time."""
    with _lock:
        per_model = _cache.setdefault(handle, {})
        if key not in per_model:
            per_model[key] = compute()
        return per_model[key]


def head_weights(handle: ModelHandle) -> HeadWeights:
    """The model's folded per-head weights (read once); raises ``WeightsUnavailable``."""
    return _memo(handle, "weights", lambda: read_head_weights(handle))


def circuits(handle: ModelHandle) -> Circuits:
    """The model's vocabulary circuits (W_Eᵀ·W_U and the sample computed once); raises ``WeightsUnavailable``."""
    return _memo(handle, "circuits", lambda: Circuits(handle))


def weights_available(handle: ModelHandle) -> bool:
    """True if the model's per-head weights can be read."""
    try:
        head_weights(handle)
    except WeightsUnavailable:
        return False
    return True


def weight_notes(handle: ModelHandle) -> tuple[str, ...]:
    """What the weight-based scores leave out for this model (or why they are unavailable)."""
    try:
        return head_weights(handle).notes
    except WeightsUnavailable as error:
        return (str(error),)


def weight_scores(handle: ModelHandle) -> pd.DataFrame:
    """One row per head: "head", "layer", "head_index" and the ``WEIGHT_SCORE_COLUMNS`` (NaN where unavailable)."""
    def compute() -> pd.DataFrame:
        info = handle.info
        blank = np.full((info.n_layers, info.n_heads), np.nan)
        try:
            model = circuits(handle)
        except WeightsUnavailable:
            return heads_frame(info.n_layers, info.n_heads, **{name: blank for name in WEIGHT_SCORE_COLUMNS})
        return heads_frame(info.n_layers, info.n_heads, copying=model.copying_scores(),
                           maps_copying=model.maps_copying(), successor=model.successor_scores()[0])
    return _memo(handle, "scores", compute).copy()


def composition_scores(handle: ModelHandle, kind: str) -> pd.DataFrame:
    """One row per (source, target) head pair, source in an earlier layer: "source", "target", "kind", "score",
    "baseline" (and the layers and heads); raises ``WeightsUnavailable``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return _memo(handle, f"composition-{kind}", lambda: composition_table(head_weights(handle), kind)).copy()


def ov_top_pairs(handle: ModelHandle, layer: int, head: int, k: int = TOP_K) -> pd.DataFrame:
    """The head's k strongest (read → written) token pairs over the vocabulary sample."""
    return circuits(handle).top_pairs(layer, head, k)
