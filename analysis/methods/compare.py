"""Compare the attention of two traces: two texts on one model, or one text on two models.

Rows of two patterns are compared with the Jensen–Shannon distance (Lin 1991; Endres & Schindelin
2003): the square root of the JS divergence in bits, a metric between 0 (same distribution) and 1
(disjoint supports). A head's distance is the mean over its query rows. Two texts are aligned on the
shorter one: both patterns are cut to its first n tokens (rows renormalised, which changes nothing for
causal models, whose first n queries only see the first n keys). Two models are compared head by head
when they have the same layer × head shape and tokenise the text the same way; with different shapes
each head of the first model is matched to the closest head of the second.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.heads import head_label, heads_frame
from analysis.runtime.trace import Trace



class CompareError(ValueError):
    """The two traces cannot be compared (different tokens for two models, nothing in common)."""


def js_distance(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) between distributions along ``axis``."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    m = 0.5 * (p + q)

    def kl_to_m(x: np.ndarray) -> np.ndarray:
        ratio = np.divide(x, m, out=np.ones_like(x), where=x > 0)
        return np.sum(x * np.log2(ratio), axis=axis)

    divergence = 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q)
    return np.sqrt(np.clip(divergence, 0.0, 1.0))


def align(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut two [..., tokens, tokens] pattern stacks to the shorter length, rows renormalised."""
    n = min(first.shape[-1], second.shape[-1])

    def cut(patterns: np.ndarray) -> np.ndarray:
        kept = patterns[..., :n, :n].astype(np.float64)
        sums = kept.sum(-1, keepdims=True)
        return np.divide(kept, sums, out=np.zeros_like(kept), where=sums > 0)

    return cut(first), cut(second)


def head_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Mean JS distance of query rows per head, [layers, heads], for aligned [layers, heads, q, k] stacks."""
    return js_distance(first, second).mean(-1)


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("js_distance", ascending=False, kind="stable").reset_index(drop=True)


def compare_texts(first: Trace, second: Trace) -> pd.DataFrame:
    """Heads ranked by how much their pattern changed between two texts on one model.

    Columns: head ("L3H2"), layer, head_index, js_distance (mean over the aligned queries).
    """
    if first.attentions.shape[:2] != second.attentions.shape[:2]:
        raise CompareError("The two traces come from models with different numbers of layers or heads.")
    distances = head_distances(*align(first.attentions, second.attentions))
    return _ranked(heads_frame(*distances.shape, js_distance=distances))


def compare_models(first: Trace, second: Trace) -> pd.DataFrame:
    """Heads of the first model ranked by distance to the second model on the same text.

    Same shape: head h against head h ("match" = the same head). Different shapes: each head against
    the closest head of the second model ("match" names it). Raises CompareError if the tokens differ.
    """
    if first.tokens != second.tokens:
        raise CompareError(
            f"{first.model_name} and {second.model_name} split the text into different tokens "
            f"({first.n_tokens} vs {second.n_tokens}), so their attention rows cannot be compared position by "
            "position. Compare models that share a tokenizer (e.g. a base and a fine-tuned checkpoint).")
    a, b = align(first.attentions, second.attentions)
    if a.shape[:2] == b.shape[:2]:
        distances = head_distances(a, b)
        frame = heads_frame(*distances.shape, js_distance=distances)
        frame["match"] = frame["head"]
        return _ranked(frame)
    n_layers, n_heads = b.shape[:2]
    flat_b = b.reshape(n_layers * n_heads, *b.shape[2:])
    all_pairs = np.array([[js_distance(head[None], flat_b).mean(-1) for head in layer] for layer in a])
    best = all_pairs.argmin(-1)  # all_pairs: [layers_a, heads_a, heads_b], one head at a time to bound memory
    frame = heads_frame(*best.shape, js_distance=all_pairs.min(-1))
    frame["match"] = [head_label(*divmod(int(i), n_heads)) for i in best.reshape(-1)]
    return _ranked(frame)


def pattern_difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Second minus first of one head's [q, k] patterns after alignment (positive: more attention in the second)."""
    a, b = align(first, second)
    return b - a
