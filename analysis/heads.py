"""Head names and per-head tables, in one place.

Heads are written ``L{layer}H{head}``, zero-based, everywhere (UI, URL, CSV, CLI); ``L3H*`` means every
head of layer 3. A per-head table is a DataFrame with one row per head in (layer, head) order and the
columns "head", "layer", "head_index", then values.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

_HEAD = re.compile(r"^L(\d{1,4})H(\d{1,4}|\*)$", re.IGNORECASE)


class HeadSpecError(ValueError):
    """A head spec such as 'L99H0' or 'foo' that does not name heads of this model."""


def head_label(layer: int, head: int) -> str:
    """Format a head as L{layer}H{head}."""
    return f"L{layer}H{head}"


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    """Parse 'L12H3, L14H*' into (layer, head) pairs, checking the ranges; raises HeadSpecError."""
    heads: list[tuple[int, int]] = []
    for part in re.split(r"[,\s;]+", spec or ""):
        if not part:
            continue
        match = _HEAD.match(part.strip())
        if not match:
            raise HeadSpecError(f"'{part[:40]}' is not a head: write heads like L12H3 or L14H* (zero-based).")
        layer = int(match.group(1))
        if layer >= n_layers:
            raise HeadSpecError(f"{part}: layer {layer} does not exist (layers 0–{n_layers - 1}).")
        if match.group(2) == "*":
            heads.extend((layer, h) for h in range(n_heads))
            continue
        head = int(match.group(2))
        if head >= n_heads:
            raise HeadSpecError(f"{part}: head {head} does not exist (heads 0–{n_heads - 1}).")
        heads.append((layer, head))
    return list(dict.fromkeys(heads))


def heads_frame(n_layers: int, n_heads: int, **columns: np.ndarray) -> pd.DataFrame:
    """One row per head in (layer, head) order, with value columns given as [layers, heads] arrays."""
    layers, heads = np.divmod(np.arange(n_layers * n_heads), n_heads)
    frame = pd.DataFrame({"head": [head_label(l, h) for l, h in zip(layers, heads)],
                          "layer": layers, "head_index": heads})
    for name, values in columns.items():
        frame[name] = np.asarray(values, dtype=np.float64).reshape(-1)
    return frame
