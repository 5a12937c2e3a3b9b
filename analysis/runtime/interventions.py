"""Head interventions as data: which head, how, how strongly. Nothing is installed on the model.

An intervention rewrites one head's output z (before the output projection, the site ``head_output``) as
``z' = base + scale * (z - base)``. The base depends on the mode:

- "zero" and "scale": 0, so scale 0 removes the head, 1 leaves it, 2 doubles what it writes;
- "mean": the head's reference mean output, averaged over a fixed set of texts (``analysis.runtime.reference``),
  the same at every position, so a position's result never depends on tokens after it;
- "resample": the head's output at the same position in another run (another text of the same length, or the
  corrupted prompt when patching), so scale 0 swaps the head's output for that run's.

A "stream" edit leaves the output alone and restricts which keys the head sees: the first ``DEFAULT_SINK`` tokens
plus the last ``window`` (a streaming head, ``StreamingEdit``); ``compile_selection`` turns a selection that mixes
both kinds into the ``Edits`` of one call.

Heads are written ``L{layer}H{head}``, zero-based; ``L3H*`` means every head of layer 3.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from analysis.heads import HeadSpecError, head_label
from analysis.runtime.sites import EDITABLE_SITES, HEAD_SITES

MODES = ("zero", "mean", "scale", "resample", "stream")
STREAM = "stream"
DEFAULT_SINK, DEFAULT_WINDOW = 4, 64  # a streaming head's first tokens kept, and its recent window


@dataclass(frozen=True)
class HeadIntervention:
    """Edit one query head: mode in MODES; head-output modes take a scale in [0, 2] for the UI (any float works),
    "stream" a ``window`` of recent keys (the other field keeps its default, so each edit has one spelling)."""

    layer: int
    head: int
    mode: str = "zero"
    scale: float = 0.0
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HeadSpecError(f"Unknown mode '{self.mode}'; use one of {', '.join(MODES)}.")
        if self.mode == STREAM:
            object.__setattr__(self, "scale", 0.0)
            if self.window < 0:
                raise HeadSpecError(f"{self.label}: a streaming head's window must be 0 or more tokens.")
        elif self.window != DEFAULT_WINDOW:
            object.__setattr__(self, "window", DEFAULT_WINDOW)

    @property
    def label(self) -> str:
        """The head's name, e.g. 'L12H3'."""
        return head_label(self.layer, self.head)


BASE_KIND = {"zero": 0, "scale": 0, "mean": 1, "resample": 2}


class MissingBaseError(ValueError):
    """A "mean" or "resample" edit was asked for without the reference it needs."""


@dataclass(frozen=True, eq=False)
class EditBases:
    """What "mean" and "resample" edits replace a head's output with."""

    mean: torch.Tensor | None = None  # [layers, heads, head_dim]: reference mean output per head
    source: tuple[torch.Tensor, ...] | None = None  # per layer [tokens, heads, head_dim]: another run's outputs


@dataclass(frozen=True, eq=False)
class EditTensors:
    """Interventions compiled for one batched forward: per row, layer and head."""

    scale: torch.Tensor  # [batch, layers, heads]
    base_kind: torch.Tensor  # [batch, layers, heads] int: 0 zero, 1 reference mean, 2 source run
    active_layers: frozenset[int]
    bases: EditBases = EditBases()
    positions: torch.Tensor | None = None  # [batch, tokens] bool: where each row edits (None: everywhere)

    @property
    def batch(self) -> int:
        """Number of batch rows (one per intervention set)."""
        return self.scale.shape[0]

    def apply(self, z: torch.Tensor, layer: int, offset: int = 0) -> torch.Tensor:
        """Rewrite head outputs z [batch, query, heads, head_dim] of one layer (queries start at ``offset``)."""
        scale = self.scale[:, layer].to(z)[:, None, :, None]
        kind = self.base_kind[:, layer].to(z.device)[:, None, :, None]
        base = torch.zeros((), dtype=z.dtype, device=z.device)
        if bool((kind == 1).any()):
            base = torch.where(kind == 1, self.bases.mean[layer].to(z)[None, None], base)
        if bool((kind == 2).any()):
            base = torch.where(kind == 2, self._source(z, layer, offset), base)
        edited = base + scale * (z - base)
        if self.positions is None:
            return edited
        where = self.positions[:, offset:offset + z.shape[1]].to(z.device)
        if where.shape[1] < z.shape[1]:  # queries past the rows' positions are left alone
            where = torch.nn.functional.pad(where, (0, z.shape[1] - where.shape[1]), value=False)
        return torch.where(where[:, :, None, None], edited, z)

    def _source(self, z: torch.Tensor, layer: int, offset: int) -> torch.Tensor:
        """The source run's outputs at these query positions; past its end, z itself (no change)."""
        source = self.bases.source[layer][offset:offset + z.shape[1]].to(z)
        if source.shape[0] == z.shape[1]:
            return source[None]
        padded = z.detach().clone()
        padded[:, :source.shape[0]] = source
        return padded


def _check_head(layer: int, head: int, n_layers: int, n_heads: int) -> None:
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise HeadSpecError(f"{head_label(layer, head)} is outside this model ({n_layers} layers × {n_heads} heads).")


def compile_edits(rows: Sequence[Iterable[HeadIntervention]], n_layers: int, n_heads: int,
                  bases: EditBases = EditBases(), positions: torch.Tensor | None = None) -> EditTensors:
    """One batch row per set of head-output interventions; an empty set is the clean run."""
    scale = torch.ones(len(rows), n_layers, n_heads)
    base_kind = torch.zeros(len(rows), n_layers, n_heads, dtype=torch.int8)
    active: set[int] = set()
    for row, edits in enumerate(rows):
        for edit in edits:
            if edit.mode == STREAM:
                raise ValueError(f"{edit.label}: a stream edit restricts keys, not the output; use compile_selection.")
            _check_head(edit.layer, edit.head, n_layers, n_heads)
            scale[row, edit.layer, edit.head] = edit.scale
            base_kind[row, edit.layer, edit.head] = BASE_KIND[edit.mode]
            if edit.scale != 1.0:
                active.add(edit.layer)
    _check_bases(base_kind, bases)
    return EditTensors(scale, base_kind, frozenset(active), bases, positions)


def gate_edits(gates: torch.Tensor, mode: str = "zero", bases: EditBases = EditBases()) -> EditTensors:
    """Gates [layers, heads] on every head (e.g. ones with requires_grad) as a one-row edit: z' = base + ξ·(z − base)."""
    base_kind = torch.full(gates.shape, BASE_KIND[mode], dtype=torch.int8)[None]
    _check_bases(base_kind, bases)
    return EditTensors(gates[None], base_kind, frozenset(range(gates.shape[0])), bases)


def _check_bases(base_kind: torch.Tensor, bases: EditBases) -> None:
    if bool((base_kind == 1).any()) and bases.mean is None:
        raise MissingBaseError("Mean ablation needs the model's reference mean head outputs.")
    if bool((base_kind == 2).any()) and bases.source is None:
        raise MissingBaseError("Resampling needs a source run: another text of the same token length.")


@dataclass(frozen=True, eq=False)
class SiteEdit:
    """Replace (or add to) a named site of one layer in some batch rows at some positions.

    ``site`` is one of ``sites.EDITABLE_SITES``. For ``q``/``k``/``v``, ``head`` names the query head (``q``) or
    the key/value head (``k``, ``v``) whose slice is edited. ``value`` is [rows or 1, positions or 1, width]
    (width d for stream sites, e for q/k/v; a missing leading dimension means one value for every row):
    "replace" writes it, "add" adds it. ``rows`` None edits every batch row, ``positions`` None every token.
    """

    site: str
    layer: int
    value: torch.Tensor
    head: int | None = None
    positions: tuple[int, ...] | None = None
    rows: tuple[int, ...] | None = None
    mode: str = "replace"

    def __post_init__(self) -> None:
        if self.site not in EDITABLE_SITES:
            raise ValueError(f"Site {self.site!r} cannot be edited; editable sites: {', '.join(sorted(EDITABLE_SITES))}.")
        if (self.head is not None) != (self.site in HEAD_SITES):
            raise ValueError(f"Edits of {self.site!r} {'need' if self.site in HEAD_SITES else 'take no'} a head.")
        if self.mode not in ("replace", "add"):
            raise ValueError(f"Unknown edit mode {self.mode!r}; use 'replace' or 'add'.")

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """The site's tensor with this edit applied (a new tensor; the input is not changed)."""
        width = tensor.shape[-1]
        value = self.value.to(tensor)
        value = value.reshape(-1, *value.shape[-2:]) if value.ndim >= 2 else value.reshape(1, 1, width)
        positions = slice(None) if self.positions is None else list(self.positions)
        rows = range(tensor.shape[0]) if self.rows is None else self.rows
        edited = tensor.clone()
        for index, row in enumerate(rows):
            where = (row, self.head, positions) if self.head is not None else (row, positions)
            new = value[index if value.shape[0] > 1 else 0]
            edited[where] = edited[where] + new if self.mode == "add" else new
        return edited


@dataclass(frozen=True, eq=False)
class StreamingEdit:
    """Restrict heads to the first ``sink`` keys plus the last ``window`` keys (query included), renormalised — a
    streaming head (Xiao et al. 2024, DuoAttention; StreamingLLM's attention sink + recent window).

    ``heads`` [batch, layers, heads] says which heads each batch row restricts; ``window`` is one for all of
    them or one per head ([batch, layers, heads] ints). The restriction is an additive mask per head passed with
    the call, on top of the model's own mask.
    """

    heads: torch.Tensor  # [batch, layers, heads] bool
    sink: int = DEFAULT_SINK
    window: int | torch.Tensor = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        windows = torch.as_tensor(self.window).expand(self.heads.shape)[self.heads.to(torch.bool)]
        if self.sink < 0 or bool((windows < 0).any()) or bool((self.sink + windows < 1).any()):
            raise ValueError("A streaming head needs a sink or a window of at least one key.")

    @property
    def active_layers(self) -> frozenset[int]:
        """Layers with at least one restricted head."""
        return frozenset(int(layer) for layer in torch.nonzero(self.heads.any(0).any(-1)).flatten())

    def mask(self, layer: int, mask: torch.Tensor | None, n_queries: int, n_keys: int, offset: int,
             dtype: torch.dtype) -> torch.Tensor:
        """The additive mask [batch, heads, query, key] of ``layer``: the model's own ``mask`` (or causal, if
        None), with keys outside sink + window blocked for the restricted heads. Queries start at ``offset``; the
        keys are the positions up to the last query (a sliding-window layer's KV cache holds only the latest)."""
        queries = offset + torch.arange(n_queries)[:, None]
        keys = offset + n_queries - n_keys + torch.arange(n_keys)[None]
        blocked = keys > queries
        window = self.window if isinstance(self.window, int) else self.window[:, layer, :, None, None]
        outside = blocked | ((keys >= self.sink) & (queries - keys >= window))
        restricted = self.heads[:, layer].to(torch.bool)[:, :, None, None]  # [batch, heads, 1, 1]
        lowest = torch.finfo(dtype).min
        base = torch.where(blocked, lowest, 0.0).to(dtype)[None, None] if mask is None else mask.to(dtype)
        base = base.expand(restricted.shape[0], restricted.shape[1], n_queries, n_keys)
        return torch.where(restricted & outside.to(base.device), torch.tensor(lowest, dtype=dtype), base)


def streaming_edit(rows: Sequence[Iterable[tuple[int, int]]], n_layers: int, n_heads: int, sink: int = DEFAULT_SINK,
                   window: int = DEFAULT_WINDOW) -> StreamingEdit:
    """One batch row per set of (layer, head) pairs restricted to sink + window keys."""
    heads = torch.zeros(len(rows), n_layers, n_heads, dtype=torch.bool)
    for row, pairs in enumerate(rows):
        for layer, head in pairs:
            _check_head(layer, head, n_layers, n_heads)
            heads[row, layer, head] = True
    return StreamingEdit(heads, sink, window)


@dataclass(frozen=True, eq=False)
class Edits:
    """Everything one call edits: head edits (one batch row each), edits at named sites, streaming heads."""

    heads: EditTensors | None = None
    sites: tuple[SiteEdit, ...] = ()
    streaming: StreamingEdit | None = None

    @property
    def active_layers(self) -> frozenset[int]:
        """Layers whose heads are edited or restricted (site edits not counted)."""
        return ((self.heads.active_layers if self.heads is not None else frozenset())
                | (self.streaming.active_layers if self.streaming is not None else frozenset()))


def compile_selection(rows: Sequence[Iterable[HeadIntervention]], n_layers: int, n_heads: int,
                      bases: EditBases = EditBases()) -> Edits:
    """One batch row per selection: its head-output edits (``compile_edits``) and its "stream" heads, each with
    its own window after the first ``DEFAULT_SINK`` tokens (``StreamingEdit``)."""
    rows = [list(row) for row in rows]
    heads = compile_edits([[edit for edit in row if edit.mode != STREAM] for row in rows], n_layers, n_heads, bases)
    restricted = torch.zeros(len(rows), n_layers, n_heads, dtype=torch.bool)
    windows = torch.zeros(len(rows), n_layers, n_heads, dtype=torch.long)
    for row, edits in enumerate(rows):
        for edit in (edit for edit in edits if edit.mode == STREAM):
            _check_head(edit.layer, edit.head, n_layers, n_heads)
            restricted[row, edit.layer, edit.head], windows[row, edit.layer, edit.head] = True, edit.window
    return Edits(heads, streaming=StreamingEdit(restricted, DEFAULT_SINK, windows) if restricted.any() else None)
