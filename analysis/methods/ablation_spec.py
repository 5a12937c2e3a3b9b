"""The ablation lab's head selection as text, and the presets that fill it.

A selection is written ``L12H3:zero:0,L14H1:mean:0.5,L3H1:stream:64`` — per item a head (``L14H*`` = the whole
layer), an optional mode (zero, mean, scale, resample, stream; see ``analysis.runtime.interventions``) and an
optional number: a scale (0 = removed, 1 = unchanged, 2 = doubled) or, for "stream", the recent window a
streaming head keeps besides the first tokens (Xiao et al. 2024, DuoAttention). This string is what the URL's
``ablate`` field carries.
Presets pick heads from the head census (Olsson et al. 2022 induction scores, attention-sink labels)
or, as a control, at random with a seed.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.heads import HeadSpecError, parse_heads
from analysis.runtime.interventions import DEFAULT_SINK, DEFAULT_WINDOW, MODES, STREAM, HeadIntervention

SCALE_RANGE = (0.0, 2.0)
MAX_WINDOW = 4096  # the longest text the Atlas reads
PRESETS: dict[str, str] = {
    "induction": "top-k induction heads (census)",
    "sink": "all sink heads (census)",
    "layer": "a whole layer",
    "random": "k random heads (seeded control)",
}


def _parse_scale(text: str, item: str) -> float:
    try:
        scale = float(text)
    except ValueError:
        raise HeadSpecError(f"'{item}': the scale '{text}' is not a number (use 0–2, e.g. L3H1:zero:0.5).") from None
    if not math.isfinite(scale) or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise HeadSpecError(f"'{item}': the scale {text} is outside 0–2 "
                            "(0 removes the head, 1 keeps it, 2 doubles it).")
    return scale


def _parse_window(text: str, item: str) -> int:
    if not text.isdigit() or int(text) > MAX_WINDOW:
        raise HeadSpecError(f"'{item}': the window '{text[:20]}' is not a whole number of tokens from 0 to "
                            f"{MAX_WINDOW} (the head keeps the first {DEFAULT_SINK} tokens and this many recent ones, "
                            "e.g. L3H1:stream:64).")
    return int(text)


def parse_ablation(spec: str, n_layers: int, n_heads: int,
                   current: list[HeadIntervention] | None = None) -> list[HeadIntervention]:
    """Parse a selection string into interventions; raises HeadSpecError with a message for people.

    An item without mode or number keeps the head's setting in ``current`` (else zero, scale 0); a new
    "stream" item without a number keeps ``DEFAULT_WINDOW`` recent tokens.
    """
    known = {(edit.layer, edit.head): edit for edit in current or []}
    chosen: dict[tuple[int, int], HeadIntervention] = {}
    for item in (part.strip() for part in (spec or "").split(",")):
        if not item:
            continue
        head_text, *options = [piece.strip() for piece in item.split(":")]
        if len(options) > 2:
            raise HeadSpecError(f"'{item[:40]}': write a head as L3H1, L3H1:mode or L3H1:mode:scale "
                                "(L3H1:stream:window).")
        if options and options[0].lower() not in MODES:
            raise HeadSpecError(f"'{item[:40]}': unknown mode '{options[0][:20]}'; use one of {', '.join(MODES)}.")
        for layer, head in parse_heads(head_text, n_layers, n_heads):
            previous = known.get((layer, head), HeadIntervention(layer, head))
            mode = options[0].lower() if options else previous.mode
            if mode == STREAM:
                window = _parse_window(options[1], item) if len(options) > 1 else (
                    previous.window if previous.mode == STREAM else DEFAULT_WINDOW)
                chosen[(layer, head)] = HeadIntervention(layer, head, mode, window=window)
                continue
            scale = _parse_scale(options[1], item) if len(options) > 1 else previous.scale
            chosen[(layer, head)] = HeadIntervention(layer, head, mode, scale)
    return list(chosen.values())


def format_ablation(interventions: list[HeadIntervention]) -> str:
    """The selection string for interventions (inverse of ``parse_ablation``)."""
    return ",".join(f"{edit.label}:{edit.mode}:{edit.window if edit.mode == STREAM else format(edit.scale, 'g')}"
                    for edit in interventions)


def preset_heads(preset: str, census: pd.DataFrame | None, n_layers: int, n_heads: int, *, k: int = 5,
                 layer: int = 0, seed: int = 0) -> list[tuple[int, int]]:
    """The (layer, head) pairs of a preset; census presets need the census DataFrame."""
    if preset == "layer":
        return [(layer, head) for head in range(n_heads)] if 0 <= layer < n_layers else []
    if preset == "random":
        picks = np.random.default_rng(seed).choice(n_layers * n_heads, size=min(k, n_layers * n_heads), replace=False)
        return [divmod(int(index), n_heads) for index in sorted(picks)]
    if preset not in PRESETS:
        raise HeadSpecError(f"Unknown preset '{preset}'; use one of {', '.join(PRESETS)}.")
    if census is None:
        raise HeadSpecError("This preset needs the head census, which is not available for this model.")
    rows = census.nlargest(k, "induction") if preset == "induction" else census[census["label"] == "sink"]
    return [(int(row.layer), int(row.head_index)) for row in rows.itertuples()]
