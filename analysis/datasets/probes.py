"""Example texts and standard probes (seeded, so a link reproduces them)."""
from __future__ import annotations

import numpy as np

from analysis.datasets import PairRow

IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPTED_IOI_PROMPT = "When Mary and John went to the store, Mary gave a drink to"  # the IOI prompt, subject swapped

EXAMPLE_TEXTS: dict[str, str] = {
    "IOI sentence": IOI_PROMPT,
    "Repeated random tokens": "",  # filled per model by repeated_random_text
    "Code snippet": (
        "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
        "    return total / len(values)\n"
    ),
    "Paragraph": (
        "The Eiffel Tower was built for the 1889 World's Fair in Paris. At first many artists "
        "criticised its design, but it soon became the symbol of the city. Today the tower "
        "welcomes millions of visitors every year, and the view from the top is famous."
    ),
}


def random_token_ids(tokenizer, length: int, seed: int) -> np.ndarray:
    """``length`` distinct ordinary word tokens drawn with a fixed seed (no special or byte tokens)."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    chosen: list[int] = []
    vocab = len(tokenizer)
    low, high = min(1000, vocab // 4), min(vocab, 20000)  # skip the first ids (bytes, specials) of real vocabularies
    for _ in range(200 * length):
        if len(chosen) == length:
            break
        candidate = int(rng.integers(low, high))
        text = tokenizer.decode([candidate])
        if candidate in special or candidate in chosen or not text.strip().isalpha():
            continue
        if tokenizer.encode(text, add_special_tokens=False) != [candidate]:
            continue
        chosen.append(candidate)
    if len(chosen) < length:
        raise ValueError(f"This vocabulary has too few plain word tokens for a probe of {length} distinct tokens.")
    return np.array(chosen, dtype=np.int64)


def repeated_random_text(tokenizer, length: int = 25, seed: int = 0) -> str:
    """A sequence of ``length`` random tokens written twice: the induction probe as text."""
    ids = random_token_ids(tokenizer, length, seed)
    once = tokenizer.decode(ids.tolist())
    return once + once


FACTUAL_PROMPT = "The Eiffel Tower is in the city of"
CORRUPTED_FACTUAL_PROMPT = "The Colosseum is in the city of"  # the subject swapped (Meng et al. 2022)
PATCHING_PAIRS: dict[str, str] = {
    "ioi": "IOI: the subject repeated vs the names swapped (answer ' Mary' vs ' John')",
    "induction": "Induction: a repeated random sequence vs its first half resampled",
    "factual": "Factual recall: the Eiffel Tower vs the Colosseum (' Paris' vs ' Rome')",
}


def patching_pair(name: str, tokenizer, length: int = 10, seed: int = 0) -> PairRow:
    """A built-in clean/corrupted pair (``PATCHING_PAIRS``). The induction pair is ``length`` random tokens A
    written again without its last token, vs B + the same second half, with B freshly drawn: the clean run
    should predict A's last token by induction, the distractor is B's last token. Seeded, so it is the same
    for a model every time."""
    if name == "ioi":
        return PairRow(IOI_PROMPT, CORRUPTED_IOI_PROMPT, " Mary", " John")
    if name == "factual":
        return PairRow(FACTUAL_PROMPT, CORRUPTED_FACTUAL_PROMPT, " Paris", " Rome")
    if name != "induction":
        raise ValueError(f"Unknown prompt pair '{name}'; use one of {', '.join(PATCHING_PAIRS)}.")
    for attempt in range(50):  # the first seed from ``seed`` whose texts re-encode to the same tokens
        ids = random_token_ids(tokenizer, 2 * length, seed + attempt).tolist()
        first, resampled = ids[:length], ids[length:]
        clean, corrupted = first + first[:-1], resampled + first[:-1]
        texts = [tokenizer.decode(clean), tokenizer.decode(corrupted)]
        if [tokenizer.encode(text, add_special_tokens=False) for text in texts] == [clean, corrupted]:
            return PairRow(*texts, tokenizer.decode(first[-1:]), tokenizer.decode(resampled[-1:]))
    raise ValueError("This vocabulary's random tokens do not keep their boundaries when written as text, so "
                     "no induction pair of equal token lengths was found.")
