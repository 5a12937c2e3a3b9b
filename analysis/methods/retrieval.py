"""Retrieval heads (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context Factuality").

A needle — a made-up fact — sits at some depth of a haystack (``analysis.datasets.haystack``); the model is asked
about it and answers greedily. A generated token *copies* the needle when it is one of the needle's tokens. A
head's retrieval score is, over the copying steps, the fraction where its top-1 attended key is a needle position
holding that very token (copy-paste behaviour), averaged over the probe's lengths × depths (trials without a
copying step do not count). Wu et al. found fewer than 5 % of heads above 0.1 in the models they studied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from analysis.datasets.haystack import NEEDLES, HaystackPrompt, Needle, haystack_prompt
from analysis.heads import heads_frame
from analysis.methods.ablation import greedy_generate, selection_edits
from analysis.methods.generation_attention import generation_rows
from analysis.methods.metrics import token_loss
from analysis.runtime.forward import check_editable, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import HeadIntervention

RETRIEVAL_THRESHOLD = 0.1
DEFAULT_LENGTHS = (256, 512, 1024)
DEFAULT_DEPTHS = (0.1, 0.5, 0.9)
MAX_HAYSTACK_TOKENS = 4096


def copy_hits(rows: np.ndarray, ids: Sequence[int], needle_span: tuple[int, int], generated: Sequence[int]
              ) -> tuple[np.ndarray, int]:
    """(hits [layers, heads], copying steps) of one generation: ``rows`` [layers, heads, steps, keys] are the
    generation's attention rows, ``ids`` the prompt (the needle at ``needle_span``), ``generated`` the tokens."""
    start, stop = needle_span
    needle_tokens = set(ids[start:stop])
    sequence = np.asarray(list(ids) + list(generated))
    top = rows.argmax(-1)  # [layers, heads, steps]
    hits = np.zeros(rows.shape[:2])
    steps = 0
    for step, token in enumerate(generated):
        if token not in needle_tokens:
            continue
        steps += 1
        attended = top[:, :, step]
        hits += (attended >= start) & (attended < stop) & (sequence[attended] == token)
    return hits, steps


@dataclass(frozen=True, eq=False)
class RetrievalResult:
    """Per-head retrieval scores and what each trial generated."""

    scores: pd.DataFrame  # head, layer, head_index, retrieval
    trials: pd.DataFrame  # length, depth, needle, tokens, answer, correct, copy_steps


def haystack_prompts(tokenizer, lengths: Sequence[int], depths: Sequence[float], needles: Sequence[Needle],
                     seed: int = 0) -> list[HaystackPrompt]:
    """Every (length, depth, needle) probe, lengths capped at ``MAX_HAYSTACK_TOKENS``."""
    return [haystack_prompt(tokenizer, needle, min(length, MAX_HAYSTACK_TOKENS), depth, seed)
            for length in lengths for depth in depths for needle in needles]


def _answer_found(tokenizer, generated: Sequence[int], needle: Needle) -> bool:
    return needle.answer.strip().lower() in tokenizer.decode(list(generated)).lower()


def retrieval_sweep(handle: ModelHandle, lengths: Sequence[int] = DEFAULT_LENGTHS,
                    depths: Sequence[float] = DEFAULT_DEPTHS, needles: Sequence[Needle] = NEEDLES[:2],
                    n_tokens: int = 8, seed: int = 0,
                    on_progress: Callable[[int, int], None] | None = None) -> RetrievalResult:
    """Run every probe: greedy answer, then each head's copy-paste hits at the copying steps."""
    if not handle.info.causal:
        raise ValueError("Retrieval heads need a causal language model (it must answer the question).")
    check_editable(handle)
    prompts = haystack_prompts(handle.tokenizer, lengths, depths, needles, seed)
    per_trial, trials = [], []
    for done, prompt in enumerate(prompts):
        ids = torch.tensor([prompt.ids])
        generated = greedy_generate(handle, ids, [], n_tokens)
        hits, steps = copy_hits(generation_rows(handle, ids, generated), prompt.ids, prompt.needle_span, generated)
        if steps:
            per_trial.append(hits / steps)
        trials.append({"length": len(prompt.ids), "depth": prompt.depth, "needle": prompt.needle.fact,
                       "answer": handle.tokenizer.decode(generated),
                       "correct": _answer_found(handle.tokenizer, generated, prompt.needle), "copy_steps": steps})
        if on_progress is not None:
            on_progress(done + 1, len(prompts))
    info = handle.info
    scores = np.mean(per_trial, axis=0) if per_trial else np.full((info.n_layers, info.n_heads), np.nan)
    return RetrievalResult(heads_frame(info.n_layers, info.n_heads, retrieval=scores), pd.DataFrame(trials))


def retrieval_scores(handle: ModelHandle, lengths: Sequence[int] = DEFAULT_LENGTHS,
                     depths: Sequence[float] = DEFAULT_DEPTHS, needles: Sequence[Needle] = NEEDLES[:2],
                     n_tokens: int = 8, seed: int = 0) -> pd.DataFrame:
    """One row per head with its ``retrieval`` score over the probe's lengths × depths × needles."""
    return retrieval_sweep(handle, lengths, depths, needles, n_tokens, seed).scores


def needle_answer(handle: ModelHandle, prompt: HaystackPrompt, interventions: Sequence[HeadIntervention] = (),
                  n_tokens: int = 8) -> tuple[float, bool]:
    """(log-probability of the needle's answer after the prompt, whether the greedy answer contains it), with the
    interventions applied."""
    ids = torch.tensor([prompt.ids + prompt.answer_ids])
    edits = selection_edits(handle, [list(interventions)], ids)
    logits = run_with_cache(handle, ids, edits=edits if edits.active_layers else None,
                            last_logits=len(prompt.answer_ids) + 1).logits
    loss = token_loss(logits, ids[:, -len(prompt.answer_ids) - 1:])[0]
    generated = greedy_generate(handle, torch.tensor([prompt.ids]), list(interventions), n_tokens)
    return -float(loss.sum()), _answer_found(handle.tokenizer, generated, prompt.needle)
