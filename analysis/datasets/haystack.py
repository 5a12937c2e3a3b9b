"""Needle-in-a-haystack prompts built from the project's own text (Wu et al. 2024, "Retrieval Head Mechanistically
Explains Long-Context Factuality"; Kamradt 2023, the needle-in-a-haystack test).

The haystack is the natural-text sample shipped with the project, its sentences shuffled per block (seeded),
cut to a token length; a needle — a made-up fact no model can know — is inserted at a depth (0 = the start,
1 = the end) on a sentence boundary; the prompt ends with a question and the start of the answer, so that a
model that found the needle copies its answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.datasets.natural_text import NATURAL_SENTENCES


@dataclass(frozen=True)
class Needle:
    """A made-up fact, the question about it, the answer's opening words and the answer itself."""

    fact: str
    question: str
    answer_prefix: str
    answer: str


NEEDLES: tuple[Needle, ...] = (
    Needle("The secret ingredient in Captain Orlo's soup is purple ginger.",
           "What is the secret ingredient in Captain Orlo's soup?", "The secret ingredient in Captain Orlo's soup is",
           " purple ginger"),
    Needle("The code name of the harbour project is Silver Walrus.", "What is the code name of the harbour project?",
           "The code name of the harbour project is", " Silver Walrus"),
    Needle("Mirela keeps the spare key to the observatory under a blue stone.",
           "Where does Mirela keep the spare key to the observatory?",
           "Mirela keeps the spare key to the observatory under", " a blue stone"),
    Needle("The village of Tarnwick celebrates its founding every year on the ninth of March.",
           "When does Tarnwick celebrate its founding?", "Tarnwick celebrates its founding every year on",
           " the ninth of March"),
    Needle("The winning horse in the Fennmoor race was called Copper Lantern.",
           "What was the winning horse in the Fennmoor race called?", "The winning horse in the Fennmoor race was called",
           " Copper Lantern"),
)


@dataclass(frozen=True)
class HaystackPrompt:
    """One probe: the prompt's token ids, where the needle sits in them, and the answer's token ids."""

    ids: list[int]
    needle_span: tuple[int, int]  # [start, stop) token positions of the needle sentence in ``ids``
    answer_ids: list[int]
    length: int  # the haystack's requested length in tokens
    depth: float
    needle: Needle


def _haystack_sentences(seed: int, count: int) -> list[str]:
    rng = np.random.default_rng(seed)
    sentences: list[str] = []
    while len(sentences) < count:
        sentences += [NATURAL_SENTENCES[i] for i in rng.permutation(len(NATURAL_SENTENCES))]
    return sentences[:count]


def haystack_prompt(tokenizer, needle: Needle, length: int, depth: float, seed: int = 0) -> HaystackPrompt:
    """The haystack cut to about ``length`` tokens with ``needle`` inserted at ``depth`` (0–1), then the question
    and the answer's start. The needle's span is found in the ids, so it is exact for any tokenizer."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"Depth {depth} is outside 0–1.")
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    sentences, used = [], 0
    for sentence in _haystack_sentences(seed, 10 * max(1, length // 8)):
        cost = len(encode(" " + sentence))
        if used + cost > length:
            break
        sentences.append(sentence)
        used += cost
    cut = int(round(depth * len(sentences)))
    before, after = " ".join(sentences[:cut]), " ".join(sentences[cut:])
    prefix = encode(before) if before else []
    needle_ids = encode(" " + needle.fact if before else needle.fact)
    tail = encode(" " + after) if after else []
    question = encode(f"\n\nQuestion: {needle.question}\nAnswer: {needle.answer_prefix}")
    specials = tokenizer.encode("", add_special_tokens=True)
    ids = specials + prefix + needle_ids + tail + question
    start = len(specials) + len(prefix)
    return HaystackPrompt(ids, (start, start + len(needle_ids)), encode(needle.answer), length, depth, needle)
