"""A loaded model: tokenizer, torch module, and what the analysis needs to know about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from analysis.runtime.architecture import ModelParts


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, shown in the UI and used by every analysis."""

    name: str
    architecture: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int
    vocab_size: int
    n_params: int
    causal: bool
    device: str
    revision: str
    supports_interventions: bool
    supports_restart: bool
    supports_head_writes: bool
    notes: tuple[str, ...]
    special_token_ids: dict[str, int] = field(default_factory=dict)

    @property
    def n_total_heads(self) -> int:
        """Number of query heads in the whole model."""
        return self.n_layers * self.n_heads


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """One loaded model, shared read-only by every caller: nothing may modify it."""

    info: ModelInfo
    tokenizer: Any
    model: torch.nn.Module
    parts: ModelParts

    @property
    def device(self) -> torch.device:
        """The device of the input embeddings (where inputs are sent)."""
        return next(self.model.parameters()).device

    def __hash__(self) -> int:  # used by caches that key on the handle
        return id(self)
