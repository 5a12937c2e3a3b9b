"""Lookback ratio (Chuang et al. 2024, "Lookback Lens: Detecting and Mitigating Contextual Hallucinations in
Large Language Models Using Only Attention Maps"): per head and generation step, how much the head looks at the
prompt rather than at the tokens it generated itself.

At step t (the query that produces generated token t, zero-based), with P prompt tokens and t tokens generated
before it: ``A_prompt`` = mean attention over the prompt's keys, ``A_new`` = mean attention over the generated
keys, and the ratio ``A_prompt / (A_prompt + A_new)``, in [0, 1]. At step 0 nothing was generated yet, so the
ratio is 1. The per-head mean over steps is the Lookback Lens feature.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.heads import heads_frame
from analysis.methods.ablation import greedy_generate, selection_edits
from analysis.methods.generation_attention import generation_rows
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import HeadIntervention


def lookback_ratios(rows: np.ndarray, n_prompt: int) -> np.ndarray:
    """[layers, heads, steps] lookback ratios from the generation's pattern rows [layers, heads, steps, keys]."""
    steps = rows.shape[2]
    prompt_mean = rows[..., :n_prompt].mean(-1)
    ratios = np.ones(rows.shape[:3], dtype=np.float64)
    for step in range(1, steps):
        new_mean = rows[:, :, step, n_prompt:n_prompt + step].mean(-1)
        total = prompt_mean[:, :, step] + new_mean
        ratios[:, :, step] = np.divide(prompt_mean[:, :, step], total, out=np.full_like(total, 0.5, dtype=np.float64),
                                       where=total > 0)
    return ratios


def generation_lookback(handle: ModelHandle, prompt_ids: torch.Tensor, n_tokens: int,
                        interventions: list[HeadIntervention] | None = None) -> tuple[list[int], np.ndarray]:
    """Greedy-generate ``n_tokens`` (with the interventions) and return (the tokens, ratios [layers, heads, steps])."""
    interventions = list(interventions or [])
    generated = greedy_generate(handle, prompt_ids, interventions, n_tokens)
    edits = selection_edits(handle, [interventions], prompt_ids)
    rows = generation_rows(handle, prompt_ids, generated, edits if edits.active_layers else None)
    return generated, lookback_ratios(rows, prompt_ids.shape[1])


def lookback_table(ratios: np.ndarray, step_tokens: list[str]) -> pd.DataFrame:
    """One row per head: its mean ratio over the steps, then one column per step ("step 0 ' Mary'", …)."""
    n_layers, n_heads, _ = ratios.shape
    frame = heads_frame(n_layers, n_heads, mean=ratios.mean(-1))
    for step, token in enumerate(step_tokens):
        frame[f"step {step} {token!r}"] = ratios[:, :, step].reshape(-1)
    return frame
