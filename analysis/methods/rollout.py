"""Attention rollout and the layered flow graph (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Pure numpy functions of a trace's attentions [layers, heads, query, key]:

- ``mixing_matrices``: per layer, the mean over heads of A (or over the selected heads only; a layer
  without selected heads passes only the residual), mixed with the identity for the residual
  connection, ``0.5·A + 0.5·I``, rows renormalised to sum to 1.
- ``rollout``: the products ``R_l = Â_l · Â_{l-1} ··· Â_0``; row i of ``R_l`` says how much the
  stream at token i after layer l draws on each input token.
- ``flow_edges``: the graph tokens × layers, one edge per (layer, key → query) with its weight,
  thresholded. Either the mixed attention itself, or the share of one output token's rollout that
  passes through the edge (the edge weights of each layer then sum to 1).

With ``exclude_sink`` the attention to the first token (from every later query) is treated as a
no-op: it is removed and not redistributed, so after the residual mix and renormalisation that
mass goes to the residual. The first token's attention to itself is kept.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

RESIDUAL_WEIGHT = 0.5


def _check(attentions: np.ndarray) -> None:
    if attentions.ndim != 4 or attentions.shape[2] != attentions.shape[3]:
        raise ValueError(f"attentions must be [layers, heads, tokens, tokens], got shape {attentions.shape}")


def head_mask(n_layers: int, n_heads: int, heads: Iterable[tuple[int, int]] | None) -> np.ndarray:
    """A [layers, heads] boolean mask of the heads that count (all heads if ``heads`` is None)."""
    mask = np.zeros((n_layers, n_heads), dtype=bool)
    if heads is None:
        mask[:] = True
        return mask
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def mixing_matrices(attentions: np.ndarray, heads: Iterable[tuple[int, int]] | None = None,
                    exclude_sink: bool = False) -> np.ndarray:
    """Per layer ``0.5·mean_h A + 0.5·I`` with rows renormalised: [layers, tokens, tokens] float64."""
    _check(attentions)
    n_layers, n_heads, n_tokens, _ = attentions.shape
    mask = head_mask(n_layers, n_heads, heads).astype(np.float64)
    counts = mask.sum(axis=1)
    summed = np.einsum("lh,lhqk->lqk", mask, attentions.astype(np.float64))
    mean = np.divide(summed, counts[:, None, None], out=np.zeros_like(summed), where=counts[:, None, None] > 0)
    if exclude_sink and n_tokens > 1:
        mean[:, 1:, 0] = 0.0
    mixed = (1 - RESIDUAL_WEIGHT) * mean + RESIDUAL_WEIGHT * np.eye(n_tokens)
    mixed[counts == 0] = np.eye(n_tokens)  # no selected head in this layer: only the residual
    return mixed / mixed.sum(axis=-1, keepdims=True)


def rollout(attentions: np.ndarray, heads: Iterable[tuple[int, int]] | None = None,
            exclude_sink: bool = False) -> np.ndarray:
    """Rollout after every layer: [layers, tokens, tokens], entry [l, i, j] = share of input token j in token i."""
    mixed = mixing_matrices(attentions, heads, exclude_sink)
    result = np.empty_like(mixed)
    current = np.eye(mixed.shape[1])
    for layer, matrix in enumerate(mixed):
        current = matrix @ current
        result[layer] = current
    return result


def token_contributions(rollout_maps: np.ndarray, position: int, layer: int = -1) -> np.ndarray:
    """How much each input token contributes to the stream at ``position`` after ``layer`` (sums to 1)."""
    return rollout_maps[layer, position]


def flow_masses(mixed: np.ndarray, position: int) -> np.ndarray:
    """Share of the output token's rollout held by each token's stream entering each layer: [layers + 1, tokens]."""
    n_layers, n_tokens, _ = mixed.shape
    mass = np.zeros((n_layers + 1, n_tokens))
    mass[n_layers, position] = 1.0
    for layer in range(n_layers - 1, -1, -1):
        mass[layer] = mass[layer + 1] @ mixed[layer]
    return mass


def flow_edges(mixed: np.ndarray, threshold: float = 0.05, position: int | None = None) -> pd.DataFrame:
    """Edges of the layered graph with weight ≥ ``threshold``, strongest first.

    Node (layer l, token j) is token j's stream entering layer l; node (layers, j) is the output.
    Without ``position`` an edge's weight is the mixed attention ``Â_l[i, j]`` (query i reads key j).
    With ``position`` it is the share of that output token's rollout flowing along the edge:
    ``m_{l+1}[i] · Â_l[i, j]``, where ``m`` is the share held by each stream. Columns: layer, source
    (key token j at layer l), target (query token i at layer l + 1), weight, residual (i == j).
    """
    n_layers, n_tokens, _ = mixed.shape
    weights = mixed if position is None else flow_masses(mixed, position)[1:, :, None] * mixed
    layers, targets, sources = np.nonzero(weights >= threshold)
    frame = pd.DataFrame({"layer": layers, "source": sources, "target": targets,
                          "weight": weights[layers, targets, sources]})
    frame["residual"] = frame["source"] == frame["target"]
    return frame.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)
