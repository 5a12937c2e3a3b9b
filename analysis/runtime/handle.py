"""A loaded model: tokenizer, torch module, and what the analysis needs to know about it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch

from analysis.runtime.architecture import ModelParts


class Tokenizer(Protocol):
    """What the Atlas uses of a tokenizer (any transformers tokenizer has it)."""

    all_special_ids: list[int]

    def __call__(self, text: str, **options: Any) -> Any:
        """Encode ``text``; ``return_tensors="pt"`` gives ``.input_ids`` [1, tokens]."""

    def encode(self, text: str, **options: Any) -> list[int]:
        """Token ids of ``text``."""

    def decode(self, token_ids: Sequence[int], **options: Any) -> str:
        """The text of ``token_ids``."""

    def save_pretrained(self, folder: Any) -> Any:
        """Write the tokenizer's files to ``folder``."""


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
    device: str
    revision: str
    parts: ModelParts = field(repr=False, compare=False)  # what the model allows is read from here
    special_token_ids: dict[str, int] = field(default_factory=dict)

    @property
    def n_total_heads(self) -> int:
        """Number of query heads in the whole model."""
        return self.n_layers * self.n_heads

    @property
    def causal(self) -> bool:
        """True for causal language models, False for encoders."""
        return self.parts.causal

    @property
    def supports_interventions(self) -> bool:
        """True if heads can be edited."""
        return self.parts.supports_interventions

    @property
    def supports_restart(self) -> bool:
        """True if a run can start at a later layer from a cached stream."""
        return self.parts.supports_restart

    @property
    def supports_head_writes(self) -> bool:
        """True if each head's write to the stream can be read."""
        return self.parts.supports_head_writes

    @property
    def notes(self) -> tuple[str, ...]:
        """What the runtime found it cannot do with this model, in words."""
        return self.parts.notes


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """One loaded model, shared read-only by every caller: nothing may modify it."""

    info: ModelInfo
    tokenizer: Tokenizer
    model: torch.nn.Module
    parts: ModelParts

    @property
    def device(self) -> torch.device:
        """The device of the input embeddings (where inputs are sent)."""
        return next(self.model.parameters()).device

    def __hash__(self) -> int:  # used by caches that key on the handle
        return id(self)
