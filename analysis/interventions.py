"""Head interventions as data: which head, how, how strongly. Nothing is installed on the model.

An intervention rewrites one head's output z (before the output projection) as
``z' = base + scale * (z - base)``, where ``base`` is 0 for modes "zero" and "scale" and the
head's mean output over the text's positions for mode "mean". So scale 0 removes the head
(zero- or mean-ablation), 1 leaves it unchanged, 2 doubles what it adds.
Heads are written ``L{layer}H{head}``, zero-based; ``L3H*`` means every head of layer 3.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

MODES = ("zero", "mean", "scale")
_HEAD = re.compile(r"^L(\d{1,4})H(\d{1,4}|\*)$", re.IGNORECASE)


class HeadSpecError(ValueError):
    """A head spec such as 'L99H0' or 'foo' that does not name heads of this model."""


@dataclass(frozen=True)
class HeadIntervention:
    """Edit one query head's output: mode in MODES, scale in [0, 2] for the UI (any float works)."""

    layer: int
    head: int
    mode: str = "zero"
    scale: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HeadSpecError(f"Unknown mode '{self.mode}'; use one of {', '.join(MODES)}.")

    @property
    def label(self) -> str:
        """The head's name, e.g. 'L12H3'."""
        return head_label(self.layer, self.head)


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


@dataclass(frozen=True)
class EditTensors:
    """Interventions compiled for one batched forward: per row, layer and head."""

    scale: torch.Tensor  # [batch, layers, heads]
    mean_mask: torch.Tensor  # [batch, layers, heads] bool: base is the mean output
    active_layers: frozenset[int]

    @property
    def batch(self) -> int:
        """Number of batch rows (one per intervention set)."""
        return self.scale.shape[0]


def compile_edits(
    rows: Sequence[Iterable[HeadIntervention]], n_layers: int, n_heads: int
) -> EditTensors:
    """One batch row per set of interventions; an empty set is the clean run."""
    scale = torch.ones(len(rows), n_layers, n_heads)
    mean_mask = torch.zeros(len(rows), n_layers, n_heads, dtype=torch.bool)
    active: set[int] = set()
    for row, edits in enumerate(rows):
        for edit in edits:
            if not (0 <= edit.layer < n_layers and 0 <= edit.head < n_heads):
                raise HeadSpecError(f"{edit.label} is outside this model ({n_layers} layers × {n_heads} heads).")
            scale[row, edit.layer, edit.head] = edit.scale
            mean_mask[row, edit.layer, edit.head] = edit.mode == "mean"
            if edit.scale != 1.0:
                active.add(edit.layer)
    return EditTensors(scale, mean_mask, frozenset(active))


def gate_edits(gates: torch.Tensor) -> EditTensors:
    """Multiplicative head gates [layers, heads] (e.g. ones with requires_grad) as a one-row edit."""
    return EditTensors(gates[None], torch.zeros_like(gates, dtype=torch.bool)[None], frozenset(range(gates.shape[0])))


def apply_edits(z: torch.Tensor, edits: EditTensors, layer: int) -> torch.Tensor:
    """Rewrite head outputs z [batch, heads, query, head_dim] of one layer."""
    scale = edits.scale[:, layer].to(z)[:, :, None, None]
    mean_mask = edits.mean_mask[:, layer].to(z.device)
    if not bool(mean_mask.any()):
        return z * scale
    base = z.mean(dim=2, keepdim=True) * mean_mask[:, :, None, None].to(z.dtype)
    return base + scale * (z - base)
