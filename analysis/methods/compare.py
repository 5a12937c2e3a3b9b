"""Compare the attention of two traces: two texts on one model, or one text on two models.

Rows of two patterns are compared with the Jensen–Shannon distance (Lin 1991; Endres & Schindelin
2003): the square root of the JS divergence in bits, a metric between 0 (same distribution) and 1
(disjoint supports). A head's distance is the mean over its compared query rows.

Two texts are aligned by their tokens with difflib's ``SequenceMatcher`` (Ratcliff–Obershelp matching):
tokens in matching blocks are paired, and so are tokens replaced one for one (a substituted word keeps
its slot, as in a clean/corrupted pair). Inserted or deleted tokens, and replaced spans of unequal
length, are left out. Only aligned positions are compared: each aligned query row restricted to the
aligned key columns, renormalised. Two models are compared on one text when they split it into the same
tokens: head by head when they have the same layer × head shape, else each head of the first against
the closest head of the second.

Patterns come one layer at a time from ``Trace.layer_patterns`` (computed on demand) and rows are
compared in chunks, so memory stays at one layer of each trace even for texts of 4,096 tokens; a
``progress(done, total)`` callback hears about every finished layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label, heads_frame
from analysis.runtime.trace import Trace

ROW_CHUNK = 256  # query rows compared at once
Progress = Callable[[int, int], None]


class CompareError(ValueError):
    """The two traces cannot be compared (different tokens for two models, nothing in common)."""


@dataclass(frozen=True)
class Alignment:
    """Paired token positions of two texts: ``first[i]`` in the first text goes with ``second[i]``."""

    first: np.ndarray  # increasing positions in the first text
    second: np.ndarray  # the paired positions in the second text
    n_first: int  # tokens in the first text
    n_second: int  # tokens in the second text

    @property
    def n_aligned(self) -> int:
        """Number of paired positions."""
        return len(self.first)

    @property
    def left_out(self) -> tuple[int, int]:
        """Tokens of the first and of the second text that have no partner."""
        return self.n_first - self.n_aligned, self.n_second - self.n_aligned


def align_tokens(first: Sequence[str], second: Sequence[str]) -> Alignment:
    """Pair the tokens of two texts: matching blocks, plus one-for-one replacements (see the module doc)."""
    matcher = SequenceMatcher(None, list(first), list(second), autojunk=False)
    pairs_first: list[int] = []
    pairs_second: list[int] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            pairs_first.extend(range(i1, i2))
            pairs_second.extend(range(j1, j2))
    return Alignment(np.array(pairs_first, dtype=np.int64), np.array(pairs_second, dtype=np.int64),
                     len(first), len(second))


def identity_alignment(n_tokens: int) -> Alignment:
    """Every position paired with itself (one text on two models)."""
    positions = np.arange(n_tokens)
    return Alignment(positions, positions, n_tokens, n_tokens)


def _plogp_sum(x: torch.Tensor) -> torch.Tensor:
    return torch.special.xlogy(x, x).sum(-1)


def _js(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """JS distance in bits along the last axis: sqrt(H(m) − (H(p) + H(q)) / 2), m = (p + q) / 2."""
    divergence = 0.5 * (_plogp_sum(p) + _plogp_sum(q)) - _plogp_sum(p.add(q).mul_(0.5))
    return (divergence / math.log(2)).clamp(0.0, 1.0).sqrt()


def js_distance(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen–Shannon distance (base 2, in [0, 1]) between distributions along ``axis`` (float64)."""
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    return _js(torch.from_numpy(np.moveaxis(p, axis, -1).copy()), torch.from_numpy(np.moveaxis(q, axis, -1).copy())
               ).numpy()


def aligned_rows(patterns: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> torch.Tensor:
    """``patterns[..., rows, :][..., columns]`` in float64 with each row renormalised to sum to 1 (all-zero rows
    stay 0)."""
    kept = torch.from_numpy(np.take(patterns, rows, axis=-2))
    if len(columns) and columns[-1] - columns[0] == len(columns) - 1:  # a run of consecutive keys: a slice
        kept = kept[..., columns[0]:columns[-1] + 1]
    else:
        kept = kept.index_select(-1, torch.from_numpy(columns))
    kept = kept.double()
    return kept.div_(kept.sum(-1, keepdim=True).clamp_min_(1e-300))


def _row_chunks(alignment: Alignment, causal: bool):
    """(query slice, key slice) of aligned indices per chunk; causal rows never see later aligned keys."""
    for start in range(0, alignment.n_aligned, ROW_CHUNK):
        stop = min(alignment.n_aligned, start + ROW_CHUNK)
        yield slice(start, stop), slice(0, stop) if causal else slice(None)


def layer_distances(first: np.ndarray, second: np.ndarray, alignment: Alignment, causal: bool) -> np.ndarray:
    """Mean JS distance over aligned query rows for every pair of heads: [heads_first, heads_second], from one
    layer's patterns of each trace ([heads, tokens, tokens])."""
    totals = torch.zeros((first.shape[0], second.shape[0]), dtype=torch.float64)
    for queries, keys in _row_chunks(alignment, causal):
        b = aligned_rows(second, alignment.second[queries], alignment.second[keys])
        for head in range(first.shape[0]):
            a = aligned_rows(first[head], alignment.first[queries], alignment.first[keys])
            totals[head] += _js(a[None], b).sum(-1)
    return (totals / max(alignment.n_aligned, 1)).numpy()


def same_head_distances(first: np.ndarray, second: np.ndarray, alignment: Alignment, causal: bool) -> np.ndarray:
    """Mean JS distance over aligned query rows of head h against head h: [heads], from one layer of each."""
    totals = torch.zeros(first.shape[0], dtype=torch.float64)
    for queries, keys in _row_chunks(alignment, causal):
        a = aligned_rows(first, alignment.first[queries], alignment.first[keys])
        b = aligned_rows(second, alignment.second[queries], alignment.second[keys])
        totals += _js(a, b).sum(-1)
    return (totals / max(alignment.n_aligned, 1)).numpy()


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("js_distance", ascending=False, kind="stable").reset_index(drop=True)


def _same_shape(first: Trace, second: Trace, alignment: Alignment, progress: Progress | None) -> np.ndarray:
    """[layers, heads] distances of head h against head h, one layer of each trace in memory at a time."""
    causal = first.causal and second.causal
    distances = np.zeros((first.n_layers, first.n_heads))
    for layer in range(first.n_layers):
        distances[layer] = same_head_distances(first.layer_patterns(layer), second.layer_patterns(layer), alignment,
                                               causal)
        if progress is not None:
            progress(layer + 1, first.n_layers)
    return distances


def compare_texts(first: Trace, second: Trace, progress: Progress | None = None) -> pd.DataFrame:
    """Heads ranked by how much their pattern changed between two texts on one model, over aligned tokens.

    Columns: head ("L3H2"), layer, head_index, js_distance (mean over the aligned queries).
    """
    if (first.n_layers, first.n_heads) != (second.n_layers, second.n_heads):
        raise CompareError("The two traces come from models with different numbers of layers or heads.")
    alignment = align_tokens(first.tokens, second.tokens)
    if alignment.n_aligned == 0:
        raise CompareError("The two texts have no tokens in common, so no attention row can be compared.")
    distances = _same_shape(first, second, alignment, progress)
    return _ranked(heads_frame(*distances.shape, js_distance=distances))


def compare_models(first: Trace, second: Trace, progress: Progress | None = None) -> pd.DataFrame:
    """Heads of the first model ranked by distance to the second model on the same text.

    Same shape: head h against head h ("match" = the same head). Different shapes: each head against the
    closest head of the second model ("match" names it; every layer pair is compared, so this costs
    layers² layer computations). Raises CompareError if the tokens differ.
    """
    if first.tokens != second.tokens:
        raise CompareError(
            f"{first.model_name} and {second.model_name} split the text into different tokens "
            f"({first.n_tokens} vs {second.n_tokens}), so their attention rows cannot be compared position by "
            "position. Compare models that share a tokenizer (e.g. a base and a fine-tuned checkpoint).")
    alignment = identity_alignment(first.n_tokens)
    if (first.n_layers, first.n_heads) == (second.n_layers, second.n_heads):
        distances = _same_shape(first, second, alignment, progress)
        frame = heads_frame(*distances.shape, js_distance=distances)
        frame["match"] = frame["head"]
        return _ranked(frame)
    causal = first.causal and second.causal
    best = np.full((first.n_layers, first.n_heads), np.inf)
    match = np.zeros((first.n_layers, first.n_heads), dtype=np.int64)
    for layer in range(first.n_layers):
        patterns = first.layer_patterns(layer)
        for other in range(second.n_layers):
            pairs = layer_distances(patterns, second.layer_patterns(other), alignment, causal)
            closer = pairs.min(-1) < best[layer]
            best[layer] = np.where(closer, pairs.min(-1), best[layer])
            match[layer] = np.where(closer, other * second.n_heads + pairs.argmin(-1), match[layer])
        if progress is not None:
            progress(layer + 1, first.n_layers)
    frame = heads_frame(*best.shape, js_distance=best)
    frame["match"] = [head_label(*divmod(int(index), second.n_heads)) for index in match.reshape(-1)]
    return _ranked(frame)


def pattern_difference(first: np.ndarray, second: np.ndarray, alignment: Alignment) -> np.ndarray:
    """Second minus first of one head's [q, k] patterns over the aligned positions, rows renormalised
    (positive: more attention in the second run): [aligned, aligned] float32."""
    difference = np.empty((alignment.n_aligned, alignment.n_aligned), dtype=np.float32)
    for queries, _ in _row_chunks(alignment, causal=False):
        difference[queries] = (aligned_rows(second, alignment.second[queries], alignment.second)
                               - aligned_rows(first, alignment.first[queries], alignment.first)).numpy()
    return difference
