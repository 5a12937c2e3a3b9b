"""Block-mean pooling of long attention patterns, so a [T, T] matrix of any length draws as a bounded image.

A pattern with more rows or columns than the target is cut into near-equal blocks of consecutive positions
(block b covers positions ``edges[b] … edges[b+1]-1``) and each cell shows the block's mean weight. Row sums
are preserved up to the block size, so a pooled causal pattern still reads as "where a span of queries looks".
"""
from __future__ import annotations

import numpy as np
import torch


def block_edges(length: int, blocks: int) -> np.ndarray:
    """Start positions of ``min(blocks, length)`` near-equal blocks over ``length`` positions, plus ``length``."""
    blocks = max(1, min(int(blocks), length))
    return np.linspace(0, length, blocks + 1).round().astype(int)


def pool_pattern(pattern: np.ndarray, rows: int, cols: int | None = None, skip_first_key: bool = False
                 ) -> np.ndarray:
    """Mean of ``pattern`` [..., Q, K] over blocks: at most ``rows`` × ``cols`` cells (NaNs ignored).

    ``skip_first_key`` leaves key 0 (the attention sink) out of the means without copying the pattern.
    """
    cols = rows if cols is None else cols
    queries, keys = pattern.shape[-2:]
    if queries <= rows and keys <= cols and not skip_first_key:
        return pattern
    row_edges, col_edges = block_edges(queries, rows), block_edges(keys, cols)
    floating = pattern.dtype if np.issubdtype(pattern.dtype, np.floating) else np.float64
    values = np.asarray(pattern, dtype=floating)

    def block_sums(array: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(array, row_edges[:-1], axis=-2), col_edges[:-1], axis=-1)

    missing = np.isnan(values)
    if missing.any():
        values = np.where(missing, 0, values)
    sums = block_sums(values)
    counts = block_sums((~missing).astype(floating)) if missing.any() else (
        np.diff(row_edges)[:, None] * np.diff(col_edges)[None, :]).astype(floating)
    if skip_first_key:
        counts = np.array(np.broadcast_to(counts, sums.shape))
        first = np.add.reduceat(values[..., 0], row_edges[:-1], axis=-1)
        present = np.add.reduceat((~missing[..., 0]).astype(floating), row_edges[:-1], axis=-1)
        sums[..., 0] -= first
        counts[..., 0] -= present
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(floating, copy=False)


def thumbnails(weights: torch.Tensor, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Block means of one layer's patterns [heads, T, T] at ``cells`` × ``cells``, with and without key 0.

    Uses torch's adaptive average pooling (bins ``⌊i·T/c⌋ … ⌈(i+1)·T/c⌉``, exact blocks when c divides T), fast
    enough to run inside every forward of a trace.
    """
    weights = weights.float()
    n_tokens = weights.shape[-1]
    pooled = torch.nn.functional.adaptive_avg_pool2d(weights, cells)
    starts = (torch.arange(cells) * n_tokens) // cells
    ends = -((-(torch.arange(1, cells + 1) * n_tokens)) // cells)
    sizes = (ends - starts).to(weights)
    first_key = torch.nn.functional.adaptive_avg_pool1d(weights[..., 0][:, None], cells)[:, 0]  # [heads, cells]
    without = pooled.clone()
    width = sizes[0]
    block_sum = pooled[..., 0] * sizes[None, :] * width
    remaining = block_sum - first_key * sizes[None, :]
    without[..., 0] = remaining / (sizes[None, :] * (width - 1)) if width > 1 else float("nan")
    return pooled.cpu().numpy(), without.cpu().numpy()


def key_bin_readout(n_tokens: int, cells: int) -> torch.Tensor:
    """Key-side columns [T, cells + 1] whose attention-weighted sum is each query's mean weight per key block.

    Column b averages the keys of block b (the bins of ``thumbnails``); the last column averages block 0 without
    key 0. An attention run with these as its values (``CallRecord.key_readout``) gives every query row's block
    means without the [T, T] pattern.
    """
    starts = (torch.arange(cells) * n_tokens) // cells
    ends = -((-(torch.arange(1, cells + 1) * n_tokens)) // cells)
    keys = torch.arange(n_tokens)[:, None]
    inside = ((keys >= starts[None]) & (keys < ends[None])).float()
    readout = torch.cat([inside / (ends - starts)[None], inside[:, :1]], dim=1)
    readout[0, cells] = 0.0
    readout[:, cells] /= max(int(ends[0] - starts[0]) - 1, 1)
    return readout


def thumbnails_from_readout(read: torch.Tensor, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """``thumbnails`` from one layer's key-block readout [heads, T, cells + 1] (``key_bin_readout``)."""
    read = read.float()
    pooled = torch.nn.functional.adaptive_avg_pool1d(read.transpose(1, 2), cells).transpose(1, 2)  # [H, c, c+1]
    without = pooled[..., :cells].clone()
    n_tokens = read.shape[1]
    first_block = -((-n_tokens) // cells)  # size of key block 0
    without[..., 0] = pooled[..., cells] if first_block > 1 else float("nan")
    return pooled[..., :cells].cpu().numpy(), without.cpu().numpy()
