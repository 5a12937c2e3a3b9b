"""Datasets: many prompts at once, so that a head's score becomes a mean with a confidence interval.

A dataset is a list of texts, optionally with a patching pair per text: (clean, corrupted, target,
distractor), where the clean prompt is the text. Sources: uploaded CSV or JSONL files
(``analysis.datasets.parsing``), built-in generators (``analysis.datasets.generators``) and Python.
Rows travel as plain dicts ({"text": ...} or the four pair fields), which is also the JSONL format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAIR_FIELDS = ("clean", "corrupted", "target", "distractor")


class DatasetError(ValueError):
    """A dataset that cannot be used at all (file too big, unknown format, no usable row)."""


@dataclass(frozen=True)
class PairRow:
    """A patching row: the clean prompt, a corrupted one, and the answers the metric compares."""

    clean: str
    corrupted: str
    target: str
    distractor: str


@dataclass(frozen=True)
class Dataset:
    """Named texts; ``pairs`` is empty or holds one pair per text (``pairs[i].clean == texts[i]``)."""

    name: str
    texts: tuple[str, ...]
    pairs: tuple[PairRow, ...] = ()

    def __post_init__(self) -> None:
        if self.pairs and [pair.clean for pair in self.pairs] != list(self.texts):
            raise DatasetError("Each pair's clean prompt must be the dataset's text of that row.")

    @property
    def has_pairs(self) -> bool:
        """True if every row carries a (clean, corrupted, target, distractor) pair."""
        return bool(self.pairs)

    def __len__(self) -> int:
        return len(self.texts)

    def rows(self) -> list[dict[str, str]]:
        """The rows as plain dicts: {"text": ...}, or the four pair fields."""
        if self.pairs:
            return [{field: getattr(pair, field) for field in PAIR_FIELDS} for pair in self.pairs]
        return [{"text": text} for text in self.texts]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``from_dict`` reverses it)."""
        return {"name": self.name, "rows": self.rows()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Dataset":
        """The dataset stored by ``to_dict``."""
        return from_rows(str(data.get("name", "dataset")), data.get("rows", []))


def row_text(row: dict[str, str]) -> str:
    """The text a row stands for: its "text", or its clean prompt."""
    return row["text"] if "text" in row else row["clean"]


def from_rows(name: str, rows: list[dict[str, str]]) -> Dataset:
    """A dataset from validated row dicts (all texts, or all pairs)."""
    if rows and all(field in rows[0] for field in PAIR_FIELDS):
        pairs = tuple(PairRow(*(str(row[field]) for field in PAIR_FIELDS)) for row in rows)
        return Dataset(name, tuple(pair.clean for pair in pairs), pairs)
    return Dataset(name, tuple(row_text(row) for row in rows))
