"""Plotly figures for comparing one head across two runs: each pattern, and their difference on aligned tokens.

Each panel is its own figure, so its axis labels get their own margins; pages write the panel's title above
it, where the chart toolbars (shown on hover at the top right) cannot cover it. A matrix longer than
``MAX_CELLS`` per side is drawn as block means (``analysis.runtime.pooling``), which keeps a figure near
0.5 MB even at 4,096 tokens; the axis labels then name the first token and the size of each block.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.methods.compare import Alignment
from analysis.runtime.pooling import block_edges, pool_pattern
from components.figures.attention import COLOR_SCALE

MAX_CELLS = 300  # cells per side of a drawn matrix
TICKS = 40  # axis labels per side at most


def aligned_labels(first: list[str], second: list[str], alignment: Alignment) -> list[str]:
    """One label per aligned pair: 'Mary (9)' where both texts agree, 'John|Mary (9)' for a substitution,
    'the (12→13)' where the partner sits at another position."""
    labels = []
    for i, j in zip(alignment.first.tolist(), alignment.second.tolist()):
        token = first[i] if first[i] == second[j] else f"{first[i]}|{second[j]}"
        labels.append(f"{token} ({i})" if i == j else f"{token} ({i}→{j})")
    return labels


def unpaired_summary(tokens: list[str], paired: np.ndarray, which: str, shown: int = 5) -> str:
    """'2 of the second text's 15 tokens (␣big (7), ␣very (8))': the tokens of one text without a partner."""
    missing = sorted(set(range(len(tokens))) - set(paired.tolist()))
    if not missing:
        return f"none of the {which} text's {len(tokens)} tokens"
    named = ", ".join(f"{tokens[i]} ({i})" for i in missing[:shown]) + (", …" if len(missing) > shown else "")
    return f"{len(missing)} of the {which} text's {len(tokens)} tokens ({named})"


def _blocks(labels: list[str], cells: int) -> list[str]:
    """Axis categories: the labels themselves, or one per block of consecutive positions when pooled."""
    if len(labels) <= cells:
        return labels
    edges = block_edges(len(labels), cells)
    return [f"{labels[start]} … ({stop - start} tokens)" for start, stop in zip(edges[:-1], edges[1:])]


def is_pooled(n_tokens: int) -> bool:
    """True if a matrix of this size is drawn as block means."""
    return n_tokens > MAX_CELLS


def pattern_panel(matrix: np.ndarray, labels: list[str], signed: bool = False) -> go.Figure:
    """A [query, key] matrix as a heatmap (queries down, keys across); ``signed`` uses a diverging scale."""
    shown = pool_pattern(matrix, MAX_CELLS).astype(np.float32)
    categories = _blocks(labels, MAX_CELLS)
    bound = float(np.nanmax(np.abs(shown))) if shown.size and signed else 1.0
    figure = go.Figure(go.Heatmap(
        z=shown, x=categories, y=categories, colorscale="RdBu_r" if signed else COLOR_SCALE,
        zmin=-(bound or 1.0) if signed else 0.0, zmax=(bound or 1.0) if signed else 1.0, showscale=signed,
        colorbar={"title": "Δ weight", "thickness": 12}, hovertemplate="%{y} → %{x}<br>%{z:.4f}<extra></extra>",
    ))
    ticks = categories[::max(1, -(-len(categories) // TICKS))]
    figure.update_xaxes(tickvals=ticks, ticktext=ticks, tickangle=-60, title_text="key", automargin=True)
    figure.update_yaxes(tickvals=ticks, ticktext=ticks, autorange="reversed", title_text="query", automargin=True)
    figure.update_layout(height=460, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return figure
