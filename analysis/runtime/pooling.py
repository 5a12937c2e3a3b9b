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
    starts, ends = _bins(n_tokens, cells)
    sizes = (ends - starts).to(weights)
    first_key = torch.nn.functional.adaptive_avg_pool1d(weights[..., 0][:, None], cells)[:, 0]  # [heads, cells]
    without = pooled.clone()
    width = sizes[0]
    block_sum = pooled[..., 0] * sizes[None, :] * width
    remaining = block_sum - first_key * sizes[None, :]
    without[..., 0] = remaining / (sizes[None, :] * (width - 1)) if width > 1 else float("nan")
    return pooled.cpu().numpy(), without.cpu().numpy()


def _bins(n_tokens: int, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start and end (exclusive) of each of ``cells`` bins over ``n_tokens`` positions, as adaptive pooling cuts them."""
    starts = (torch.arange(cells) * n_tokens) // cells
    ends = -((-(torch.arange(1, cells + 1) * n_tokens)) // cells)
    return starts, ends


def key_bin_readout(n_tokens: int, cells: int) -> torch.Tensor:
    """Key-side columns [T, cells] whose attention-weighted sums give each query's weight per key block.

    Columns: key 0 alone, the rest of block 0, then blocks 1 … cells − 2 (the bins of ``thumbnails``); when the
    blocks do not overlap (cells divides T) the last block is what a query's weights (which sum to 1) leave,
    otherwise it is one more column. An attention run reading these as its values (``CallRecord.key_readout``)
    gives every query row's block sums without the [T, T] pattern; no more columns than blocks keeps the run on
    the fused kernel for heads at least that wide (it needs values as wide as the heads).
    """
    starts, ends = _bins(n_tokens, cells)
    keys = torch.arange(n_tokens)[:, None]
    inside = ((keys >= starts[None]) & (keys < ends[None])).float()
    first, rest = torch.zeros(n_tokens), inside[:, 0].clone()
    first[0], rest[0] = 1.0, 0.0
    last = cells - 1 if bool((ends[:-1] == starts[1:]).all()) else cells
    return torch.cat([first[:, None], rest[:, None], inside[:, 1:last]], dim=1)


def thumbnails_from_readout(read: torch.Tensor, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """``thumbnails`` from one layer's key-block readout [heads, T, cells] (``key_bin_readout``)."""
    read = read.float()
    n_tokens = read.shape[1]
    starts, ends = _bins(n_tokens, cells)
    sizes = (ends - starts).to(read)
    sums = [read[..., :1] + read[..., 1:2], read[..., 2:]]
    if read.shape[-1] == cells and cells > 1:  # blocks that do not overlap: the last one is the remainder
        sums.append(1.0 - read.sum(-1, keepdim=True))
    means = torch.cat(sums, dim=-1) / sizes
    first_block = means.new_full(read.shape[:2], float("nan")) if sizes[0] == 1 else read[..., 1] / (sizes[0] - 1)
    rows = torch.cat([means, first_block[..., None]], dim=-1)
    pooled = torch.nn.functional.adaptive_avg_pool1d(rows.transpose(1, 2), cells).transpose(1, 2)  # [H, c, c+1]
    without = pooled[..., :cells].clone()
    without[..., 0] = pooled[..., cells]
    return pooled[..., :cells].cpu().numpy(), without.cpu().numpy()
