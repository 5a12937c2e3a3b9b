"""Per-head attention scores as pure functions of attention patterns.

Every function takes patterns shaped [..., query, key] (e.g. [layers, heads, q, k]) and returns the
score averaged over the query positions where it is defined, shaped [...]. Definitions:

- previous-token A[i, i−1], self A[i, i], first-token (attention sink, Xiao et al. 2023) A[i, 0], i ≥ 1;
- induction and duplicate-token (Olsson et al. 2022): for a query whose token occurred before at
  position j, the mass on j + 1 (the token that followed the earlier copy) or on j itself. On the
  standard probe — distinct random tokens repeated twice — this is exactly A[i, i−L+1] and A[i, i−L]
  over the second repeat;
- positional (Voita et al. 2019; Clark et al. 2019): mean attention distance Σ_j A[i,j]·|i−j| and the
  mass within ±k tokens; broad: row entropy divided by log(number of keys the query can see);
- token-class mass (Clark et al. 2019): the mass on keys of a class such as [CLS], [SEP], punctuation.
"""
from __future__ import annotations

import numpy as np


def _mean_over_queries(values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Mean of values [..., q] over the selected query positions (NaN when none is selected)."""
    if not queries.any():
        return np.full(values.shape[:-1], np.nan)
    return values[..., queries].mean(axis=-1)


def offset_score(patterns: np.ndarray, offset: int) -> np.ndarray:
    """Mean of A[i, i − offset] over queries i ≥ offset (offset 1: previous token, 0: self)."""
    n = patterns.shape[-1]
    if n <= offset:
        return np.full(patterns.shape[:-2], np.nan)
    rows = np.arange(offset, n)
    return patterns[..., rows, rows - offset].mean(axis=-1)


def first_token_score(patterns: np.ndarray) -> np.ndarray:
    """Mean of A[i, 0] over queries i ≥ 1: how much a head parks on the first token."""
    if patterns.shape[-1] < 2:
        return np.full(patterns.shape[:-2], np.nan)
    return patterns[..., 1:, 0].mean(axis=-1)


def earlier_copies(token_ids: np.ndarray) -> np.ndarray:
    """Bool [q, k]: key j < i holds the same token as query i."""
    ids = np.asarray(token_ids)
    same = ids[:, None] == ids[None, :]
    return np.tril(same, k=-1)


def induction_score(patterns: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Mass on the token after each earlier copy of the query's token, over queries that have one."""
    copies = earlier_copies(token_ids)
    successors = np.zeros_like(copies)
    successors[:, 1:] = copies[:, :-1]
    return _mean_over_queries((patterns * successors).sum(axis=-1), copies.any(axis=1))


def duplicate_token_score(patterns: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """Mass on earlier copies of the query's own token, over queries that have one."""
    copies = earlier_copies(token_ids)
    return _mean_over_queries((patterns * copies).sum(axis=-1), copies.any(axis=1))


def _distances(n: int) -> np.ndarray:
    positions = np.arange(n)
    return np.abs(positions[:, None] - positions[None, :])


def mean_distance(patterns: np.ndarray) -> np.ndarray:
    """Mean over queries of Σ_j A[i, j]·|i − j|, in tokens."""
    return (patterns * _distances(patterns.shape[-1])).sum(axis=-1).mean(axis=-1)


def local_mass(patterns: np.ndarray, window: int) -> np.ndarray:
    """Mean over queries of the mass on keys within ±window tokens (the query itself included)."""
    near = _distances(patterns.shape[-1]) <= window
    return (patterns * near).sum(axis=-1).mean(axis=-1)


def normalised_entropy(patterns: np.ndarray, causal: bool) -> np.ndarray:
    """Row entropy / log(visible keys), averaged over queries that see at least two keys (1 = uniform)."""
    n = patterns.shape[-1]
    visible = np.arange(1, n + 1) if causal else np.full(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(patterns > 0, patterns * np.log(patterns), 0.0)
        entropy = -plogp.sum(axis=-1) / np.log(visible)
    return _mean_over_queries(entropy, visible > 1)


def class_mass(patterns: np.ndarray, key_mask: np.ndarray, skip_masked_queries: bool = False) -> np.ndarray:
    """Mean over queries of the mass on keys where ``key_mask`` is true (e.g. [SEP] or punctuation).

    With ``skip_masked_queries`` the queries that are themselves in the class are left out.
    """
    mask = np.asarray(key_mask, dtype=bool)
    if not mask.any():
        return np.full(patterns.shape[:-2], np.nan)
    mass = (patterns * mask).sum(axis=-1)
    queries = ~mask if skip_masked_queries else np.ones_like(mask)
    return _mean_over_queries(mass, queries)
