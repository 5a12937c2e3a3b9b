"""Block-mean pooling of long attention patterns, so a [T, T] matrix of any length draws as a bounded image.

A pattern with more rows or columns than the target is cut into near-equal blocks of consecutive positions
(block b covers positions ``edges[b] … edges[b+1]-1``) and each cell shows the block's mean weight. Row sums
are preserved up to the block size, so a pooled causal pattern still reads as "where a span of queries looks".
"""
from __future__ import annotations

import numpy as np


def block_edges(length: int, blocks: int) -> np.ndarray:
    """Start positions of ``min(blocks, length)`` near-equal blocks over ``length`` positions, plus ``length``."""
    blocks = max(1, min(int(blocks), length))
    return np.linspace(0, length, blocks + 1).round().astype(int)


def pool_pattern(pattern: np.ndarray, rows: int, cols: int | None = None) -> np.ndarray:
    """Mean of ``pattern`` [..., Q, K] over blocks: at most ``rows`` × ``cols`` cells (NaNs ignored)."""
    cols = rows if cols is None else cols
    queries, keys = pattern.shape[-2:]
    if queries <= rows and keys <= cols:
        return pattern
    row_edges, col_edges = block_edges(queries, rows), block_edges(keys, cols)
    values = np.nan_to_num(pattern, nan=0.0).astype(np.float64, copy=False)
    counts = (~np.isnan(pattern)).astype(np.float64)
    summed = np.add.reduceat(np.add.reduceat(values, row_edges[:-1], axis=-2), col_edges[:-1], axis=-1)
    present = np.add.reduceat(np.add.reduceat(counts, row_edges[:-1], axis=-2), col_edges[:-1], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, summed / np.maximum(present, 1), np.nan)
