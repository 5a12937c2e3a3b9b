"""Independent computations for tests only: a temporary hook on a head's output projection.

The app never installs hooks (edits travel with the call); a test may, because it owns the model for the
duration of the ``with`` block and removes the hook afterwards.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch

from analysis.runtime.handle import ModelHandle


@contextmanager
def head_rewritten(handle: ModelHandle, layer: int, head: int,
                   rewrite: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While open, the model's forward sees head ``head`` of ``layer`` as ``rewrite(z)`` before the output projection."""
    width = handle.info.head_dim
    columns = slice(head * width, (head + 1) * width)

    def replace(module, args):
        inputs = args[0].clone()
        inputs[..., columns] = rewrite(inputs[..., columns])
        return (inputs, *args[1:])

    hook = handle.parts.output_projections[layer].register_forward_pre_hook(replace)
    try:
        yield
    finally:
        hook.remove()


def head_replaced(handle: ModelHandle, layer: int, head: int, value: torch.Tensor | float = 0.0):
    """While open, the model's forward sees head ``head`` of ``layer`` replaced by ``value`` before the output projection."""
    return head_rewritten(handle, layer, head, lambda z: torch.zeros_like(z) + torch.as_tensor(value).to(z))


def model_output(handle: ModelHandle, ids: torch.Tensor) -> torch.Tensor:
    """The model's own forward output: logits for causal LMs, last hidden states for encoders."""
    with torch.inference_mode():
        output = handle.model(ids, use_cache=False) if handle.info.causal else handle.model(ids)
    return output.logits if handle.info.causal else output.last_hidden_state


def stacked_patterns(trace) -> np.ndarray:
    """Every layer's patterns of a short trace at once, [layers, heads, query, key] (tests only: quadratic)."""
    return np.stack([trace.layer_patterns(layer) for layer in range(trace.n_layers)])


def hooked_output(handle: ModelHandle, ids: torch.Tensor, hooks: list) -> torch.Tensor:
    """``model_output`` while the just-registered ``hooks`` (torch hook handles) act; removes them afterwards."""
    try:
        return model_output(handle, ids)
    finally:
        for hook in hooks:
            hook.remove()
