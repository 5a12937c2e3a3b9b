"""Where each head looked while the model generated: the pattern rows of the generated steps.

Greedy generation with a KV cache sees, at step k, the query of the last position (prompt length P − 1 + k)
against every earlier key. Attention is causal, so one forward over the prompt plus the generated tokens gives
exactly those rows: row P − 1 + k of each layer's pattern is what step k attended to. The rows are taken as
each layer runs (``on_pattern``), so no layer's full pattern is kept.
"""
from __future__ import annotations

import numpy as np
import torch

from analysis.runtime.forward import run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.runtime.interventions import Edits


def generation_rows(handle: ModelHandle, prompt_ids: torch.Tensor, generated: list[int],
                    edits: Edits | None = None) -> np.ndarray:
    """[layers, heads, steps, keys]: every head's attention at each generation step (step k: the query that
    produced ``generated[k]``, keys 0 … P − 1 + k, later keys 0) — with the same ``edits`` as the generation."""
    n_prompt, steps = prompt_ids.shape[1], len(generated)
    if steps == 0:
        raise ValueError("Nothing was generated: ask for at least one token.")
    ids = torch.cat([prompt_ids, torch.tensor([generated[:-1]], dtype=prompt_ids.dtype)], dim=1)
    rows = np.zeros((handle.info.n_layers, handle.info.n_heads, steps, ids.shape[1]), dtype=np.float32)

    def keep_rows(layer: int, weights: torch.Tensor) -> None:
        rows[layer] = weights[0, :, n_prompt - 1:].float().cpu().numpy()

    run_with_cache(handle, ids, edits=edits, last_logits=1, on_pattern=keep_rows)
    return rows
