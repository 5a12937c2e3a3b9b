"""Attention rollout and the layered flow graph (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

- ``layer_mixing``: one layer's mean over heads of A (or over the selected heads only; a layer without
  selected heads passes only the residual), mixed with the identity for the residual connection,
  ``0.5·A + 0.5·I``, rows renormalised to sum to 1.
- ``rollout``: the products ``R_l = Â_l · Â_{l-1} ··· Â_0``; row i of ``R_l`` says how much the stream at
  token i after layer l draws on each input token.
- ``trace_flow``: what the pages and the CLI need, computed in one pass from the chosen layer down to the
  first, one layer's patterns at a time (memory linear in the layers, so it works at thousands of tokens):
  rollout rows for a window of output tokens, the share of one output token's rollout held by every stream,
  and the edges of the graph tokens × layers above a threshold — either the mixed attention itself, or the
  share of that output token's rollout passing along the edge (the edge weights of each layer then sum to 1).

With ``exclude_sink`` the attention to the first token (from every later query) is treated as a no-op: it is
removed and not redistributed, so after the residual mix and renormalisation that mass goes to the residual.
The first token's attention to itself is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

RESIDUAL_WEIGHT = 0.5
LayerPatterns = Callable[[int], np.ndarray]  # layer -> [heads, tokens, tokens]


def head_mask(n_layers: int, n_heads: int, heads: Iterable[tuple[int, int]] | None) -> np.ndarray:
    """A [layers, heads] boolean mask of the heads that count (all heads if ``heads`` is None)."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    if heads is None:
        mask[:] = True
        return mask
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def layer_mixing(patterns: np.ndarray, selected: np.ndarray, exclude_sink: bool = False) -> np.ndarray:
    """``0.5·mean_h A + 0.5·I`` of one layer's patterns [heads, T, T] over the ``selected`` heads (bool
    [heads]), rows renormalised: [T, T] float64."""
    n_tokens = patterns.shape[-1]
    if not selected.any():
        return np.eye(n_tokens)
    mean = np.zeros((n_tokens, n_tokens))
    for head in np.flatnonzero(selected):
        mean += patterns[head]
    mean /= selected.sum()
    if exclude_sink and n_tokens > 1:
        mean[1:, 0] = 0.0
    mean *= 1 - RESIDUAL_WEIGHT
    mean[np.diag_indices(n_tokens)] += RESIDUAL_WEIGHT
    mean /= mean.sum(axis=-1, keepdims=True)
    return mean


def _from_array(attentions: np.ndarray) -> LayerPatterns:
    if attentions.ndim != 4 or attentions.shape[2] != attentions.shape[3]:
        raise ValueError(f"attentions must be [layers, heads, tokens, tokens], got shape {attentions.shape}")
    return lambda layer: attentions[layer]


def rollout(attentions: np.ndarray, heads: Iterable[tuple[int, int]] | None = None,
            exclude_sink: bool = False) -> np.ndarray:
    """Rollout after every layer of in-memory patterns [layers, heads, T, T]: [layers, T, T], entry [l, i, j] =
    share of input token j in token i (for short texts and tests; pages use ``trace_flow``)."""
    patterns = _from_array(attentions)
    mask = head_mask(*attentions.shape[:2], heads)
    result = np.empty((attentions.shape[0], *attentions.shape[2:]))
    current = np.eye(attentions.shape[2])
    for layer in range(attentions.shape[0]):
        current = layer_mixing(patterns(layer), mask[layer], exclude_sink) @ current
        result[layer] = current
    return result


@dataclass(frozen=True)
class Flow:
    """Rollout and flow of one output token after one layer (see the module docstring)."""

    layer: int  # rollout after this layer
    position: int  # the output token whose flow is traced
    rows: np.ndarray  # output positions of the rollout window
    rollout_rows: np.ndarray  # [len(rows), tokens]: share of each input token in each row's stream
    masses: np.ndarray  # [layer + 2, tokens]: share of the position's rollout held by each stream entering each
    #                     layer (row layer + 1 is the output); masses[0] is the position's rollout row
    edges: pd.DataFrame  # layer, source (key j at layer l), target (query i at l + 1), weight, residual (i == j)

    @property
    def contributions(self) -> np.ndarray:
        """How much each input token contributes to the output token's stream (sums to 1)."""
        return self.masses[0]


def trace_flow(layer_patterns: LayerPatterns, n_heads: int, layer: int, position: int, rows: Sequence[int],
               heads: Iterable[tuple[int, int]] | None = None, exclude_sink: bool = False,
               threshold: float = 0.05, focus: bool = True) -> Flow:
    """Rollout rows, flow masses and flow edges after ``layer``, one layer's patterns in memory at a time.

    ``focus``: edge weights are the share of ``position``'s rollout flowing along each edge
    (``m_{l+1}[i] · Â_l[i, j]``); otherwise the mixed attention ``Â_l[i, j]`` itself.
    """
    mask = head_mask(layer + 1, n_heads, None if heads is None else [(l, h) for l, h in heads if l <= layer])
    window = np.asarray(rows, dtype=int)
    frames, masses, window_rows = [], [], None
    for current in range(layer, -1, -1):
        mixed = layer_mixing(layer_patterns(current), mask[current], exclude_sink)
        if window_rows is None:
            window_rows = mixed[window]
            mass = np.zeros(mixed.shape[0])
            mass[position] = 1.0
            masses.append(mass)
        else:
            window_rows = window_rows @ mixed
        weights = masses[-1][:, None] * mixed if focus else mixed
        targets, sources = np.nonzero(weights >= threshold)
        frames.append(pd.DataFrame({"layer": current, "source": sources, "target": targets,
                                    "weight": weights[targets, sources]}))
        masses.append(masses[-1] @ mixed)
    edges = pd.concat(frames, ignore_index=True)
    edges["residual"] = edges["source"] == edges["target"]
    edges = edges.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)
    return Flow(layer=layer, position=position, rows=window, rollout_rows=window_rows,
                masses=np.stack(masses[::-1]), edges=edges)


def array_flow(attentions: np.ndarray, layer: int, position: int, **options) -> Flow:
    """``trace_flow`` over in-memory patterns [layers, heads, T, T] (every output row in the window)."""
    return trace_flow(_from_array(attentions), attentions.shape[1], layer, position, range(attentions.shape[2]),
                      **options)
