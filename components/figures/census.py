"""Figures of the head census: a layer × head grid of one score with each head's label written in it,
and a categorical map of the labels."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.methods.census import LABELS, SCORE_COLUMNS
from components.figures.grids import grid_layout, importance_grid

SHORT_LABELS = {"induction": "ind", "duplicate-token": "dup", "previous-token": "prev", "dormant": "dorm",
                "[SEP]": "SEP", "[CLS]": "CLS", "punctuation": "punc", "sink": "sink", "positional": "pos",
                "self": "self", "broad": "broad", "successor": "succ", "copy-suppression": "supp", "copying": "copy",
                "": ""}
LABEL_COLORS = {"induction": "#d6336c", "duplicate-token": "#f08c00", "previous-token": "#2f9e44",
                "dormant": "#495057", "[SEP]": "#1971c2", "[CLS]": "#4dabf7", "punctuation": "#ae3ec9",
                "sink": "#ced4da", "positional": "#94d82d", "self": "#ffd43b", "broad": "#66d9e8",
                "successor": "#7048e8", "copy-suppression": "#c92a2a", "copying": "#0ca678", "": "#ffffff"}


SCORE_NAMES = {"induction": "induction (probe)", "duplicate_token": "duplicate-token (probe)",
               "induction_text": "induction (your text)", "duplicate_text": "duplicate-token (your text)",
               "previous_token": "previous-token", "self": "self", "first_token": "first-token mass (sink)",
               "mean_distance": "mean attention distance", "local_mass": "local mass", "entropy": "entropy (broad)",
               "cls_mass": "[CLS] mass", "sep_mass": "[SEP] mass", "punct_mass": "punctuation mass",
               "output_norm": "output norm", "copying": "copying (weights)", "maps_copying": "MAPS copying (weights)",
               "successor": "successor (weights)", "label": "label (categorical map)"}
ENCODER_SCORES = ("cls_mass", "sep_mass")  # mass on special tokens only encoders have
SIGNED_SCORES = ("copying",)  # −1 (suppresses) … +1 (copies): a diverging scale


def score_views(causal: bool) -> list[str]:
    """What the census grid can be coloured by for this kind of model ([CLS]/[SEP] mass only for encoders)."""
    return [name for name in (*SCORE_COLUMNS, "label") if not (causal and name in ENCODER_SCORES)]


def _shape(frame: pd.DataFrame) -> tuple[int, int]:
    return int(frame["layer"].max()) + 1, int(frame["head_index"].max()) + 1


def head_hover_text(frame: pd.DataFrame) -> list[str]:
    """Per head, in (layer, head) order: its label, every score and its notes (if a "notes" column has them)."""
    texts = []
    for _, row in frame.iterrows():
        scores = "<br>".join(f"{SCORE_NAMES[name]}: {row[name]:.3f}" for name in SCORE_COLUMNS
                             if name in row and np.isfinite(row[name]))
        note = f"<br>✎ {html.escape(row['notes'])}" if row.get("notes") else ""
        texts.append(f"<b>{row['head']}</b> {row['label'] or 'no label'}<br>{scores}{note}")
    return texts


def score_grid(frame: pd.DataFrame, score: str, title: str) -> go.Figure:
    """The score as colour, each head's short label as text; heads without the score stay blank."""
    figure = importance_grid(frame, score, title, signed=score in SIGNED_SCORES,
                             colorbar_title=SCORE_NAMES[score].split(" (")[0])
    n_layers, n_heads = _shape(frame)
    labels = np.array([SHORT_LABELS.get(label, label) for label in frame["label"]]).reshape(n_layers, n_heads)
    figure.update_traces(text=labels, texttemplate="%{text}", textfont={"size": 9}, selector={"type": "heatmap"})
    return figure


def label_map(frame: pd.DataFrame) -> go.Figure:
    """Each head coloured by its label, with a legend of the labels present."""
    n_layers, n_heads = _shape(frame)
    present = [label for label in LABELS if (frame["label"] == label).any()]
    codes = np.array([present.index(label) for label in frame["label"]], dtype=float).reshape(n_layers, n_heads)
    steps = max(len(present), 1)
    colorscale = []
    for index, label in enumerate(present):
        colorscale += [[index / steps, LABEL_COLORS[label]], [(index + 1) / steps, LABEL_COLORS[label]]]
    labels = np.array([SHORT_LABELS[label] for label in frame["label"]]).reshape(n_layers, n_heads)
    figure = go.Figure(go.Heatmap(
        z=codes, x=list(range(n_heads)), y=list(range(n_layers)), zmin=-0.5, zmax=steps - 0.5,
        colorscale=colorscale, text=labels, texttemplate="%{text}", textfont={"size": 9}, hoverinfo="skip",
        xgap=1, ygap=1, colorbar={"tickvals": list(range(steps)), "ticktext": [p or "none" for p in present],
                                  "thickness": 12, "title": "label"},
    ))
    return grid_layout(figure, n_layers, n_heads, "Head labels")
