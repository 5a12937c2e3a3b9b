"""Built-in datasets: IOI pairs, repeated random-token probes and a small natural-text sample.

- IOI (indirect object identification, Wang et al. 2022): a template × an ordered pair of names, drawn
  with a seed. The clean prompt names the subject twice ("When Mary and John went to the store, John gave a
  drink to"; answer " Mary"); the corrupted prompt has the indirect object as the giver instead ("…, Mary
  gave a drink to"), so the target is the indirect object and the distractor the subject. Every name,
  place and object is one token (with its leading space) in the embedded models' vocabularies.
- Repeated random tokens: the induction probe of Olsson et al. (2022) as text, one per seed.
- Natural text: ``analysis.datasets.natural_text``, written for this project (same licence as the code).
"""
from __future__ import annotations

import itertools

import numpy as np

from analysis.datasets import Dataset, DatasetError, PairRow
from analysis.datasets.natural_text import NATURAL_SENTENCES
from analysis.datasets.probes import repeated_random_text

MAX_GENERATED_ROWS = 2_000
GENERATORS: dict[str, str] = {"ioi": "IOI pairs", "repeat": "Repeated random tokens",
                              "natural": "Natural text sample"}

IOI_TEMPLATES = (
    "When {a} and {b} went to the {place}, {giver} gave a {object} to",
    "After {a} and {b} arrived at the {place}, {giver} handed a {object} to",
    "While {a} and {b} were at the {place}, {giver} passed a {object} to",
    "Then {a} and {b} walked into the {place}. {giver} gave the {object} to",
    "When {a} and {b} got back from the {place}, {giver} brought a {object} to",
    "Yesterday {a} and {b} met at the {place}, and {giver} showed a {object} to",
)
NAMES = ("Mary", "John", "Tom", "James", "Anna", "Sarah", "David", "Michael", "Lisa", "Paul", "Mark", "Laura",
         "Kate", "Peter", "Emma", "Daniel", "Alice", "Robert", "Susan", "Jack")
PLACES = ("store", "park", "office", "school", "beach", "garden", "station", "market", "library", "restaurant")
OBJECTS = ("drink", "book", "ball", "letter", "key", "gift", "bag", "pen", "ring", "cake")


def _check_count(n: int, available: int | None = None) -> None:
    limit = min(MAX_GENERATED_ROWS, available or MAX_GENERATED_ROWS)
    if not 1 <= n <= limit:
        raise DatasetError(f"Pick between 1 and {limit:,} rows (asked for {n:,}).")


def ioi_pair(template: str, indirect_object: str, subject: str, place: str, object_: str) -> PairRow:
    """One IOI row: the clean prompt (subject gives), the corrupted one (indirect object gives), the answers."""
    def fill(giver: str) -> str:
        return template.format(a=indirect_object, b=subject, giver=giver, place=place, object=object_)
    return PairRow(fill(subject), fill(indirect_object), f" {indirect_object}", f" {subject}")


def ioi_dataset(n: int, seed: int = 0) -> Dataset:
    """``n`` distinct IOI rows: (template, name pair) combinations drawn without repeats with ``seed``."""
    combinations = list(itertools.product(range(len(IOI_TEMPLATES)), itertools.permutations(NAMES, 2)))
    _check_count(n, len(combinations))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(combinations), size=n, replace=False)
    places, objects = rng.integers(len(PLACES), size=n), rng.integers(len(OBJECTS), size=n)
    pairs = tuple(ioi_pair(IOI_TEMPLATES[combinations[c][0]], *combinations[c][1], PLACES[p], OBJECTS[o])
                  for c, p, o in zip(chosen, places, objects))
    return Dataset(f"IOI pairs (n={n}, seed {seed})", tuple(pair.clean for pair in pairs), pairs)


def repeated_tokens_dataset(tokenizer, n_seeds: int, length: int = 25, first_seed: int = 0) -> Dataset:
    """One repeated random-token text (``length`` tokens written twice) per seed ``first_seed …``."""
    _check_count(n_seeds)
    if not 2 <= length <= 200:
        raise DatasetError(f"Pick between 2 and 200 random tokens per repeat (asked for {length}).")
    seeds = range(first_seed, first_seed + n_seeds)
    return Dataset(f"Repeated random tokens ({length} × 2, seeds {seeds[0]}–{seeds[-1]})",
                   tuple(repeated_random_text(tokenizer, length, seed) for seed in seeds))


def natural_text_dataset(n: int | None = None) -> Dataset:
    """The first ``n`` sentences of the built-in natural-text sample (all of them by default)."""
    n = len(NATURAL_SENTENCES) if n is None else n
    _check_count(n, len(NATURAL_SENTENCES))
    return Dataset(f"Natural text sample ({n} sentences)", NATURAL_SENTENCES[:n])


def generate_dataset(source: str, n: int, seed: int = 0, length: int = 25, tokenizer=None) -> Dataset:
    """The built-in dataset ``source`` ("ioi", "repeat" or "natural"); probes need the model's tokenizer."""
    if source == "ioi":
        return ioi_dataset(n, seed)
    if source == "repeat":
        if tokenizer is None:
            raise DatasetError("Repeated random tokens are drawn from a model's vocabulary: name the model.")
        return repeated_tokens_dataset(tokenizer, n, length, seed)
    if source == "natural":
        return natural_text_dataset(min(n, len(NATURAL_SENTENCES)))
    raise DatasetError(f"Unknown generator '{source}'; use one of {', '.join(GENERATORS)}.")
