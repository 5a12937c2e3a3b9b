"""The stream sites of every layer, read by hooks registered once at load that act only for a call's record.

A layer's input (``resid_pre``, also ``attn_in``) and output (``resid_post``), its attention's write
(``attn_out``: the attention module's output, or the output of the norm some families put on it) and its MLP's
write (``mlp_out``: the MLP's output, or the post-feed-forward norm's) are where the model's own modules hand
tensors to each other, so hooks there read and edit exactly what the model computes. The hooks stay on the
shared model and do nothing unless the current call set its ``CallRecord`` in a context variable
(``recording``): each thread and each call sees only its own record, and a plain ``model(...)`` call is
untouched.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch

from analysis.runtime.attention import CallRecord

CURRENT_RECORD: ContextVar[CallRecord | None] = ContextVar("atlas_current_record", default=None)


@contextmanager
def recording(record: CallRecord) -> Iterator[None]:
    """While open, the site hooks of this thread's calls act for ``record``."""
    token = CURRENT_RECORD.set(record)
    try:
        yield
    finally:
        CURRENT_RECORD.reset(token)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, tensor: torch.Tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


def _layer_input_hook(layer: int):
    def hook(_module, args, kwargs):
        record = CURRENT_RECORD.get()
        if record is None:
            return None
        hidden = args[0] if args else kwargs["hidden_states"]
        if record.stream_grad and not hidden.requires_grad:
            hidden = hidden.detach().requires_grad_()  # the stream's gradients start here
        edited = record.at_site("resid_pre", layer, hidden)
        return ((edited, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": edited})
    return hook


def _output_hook(site: str, layer: int):
    def hook(_module, _args, output):
        record = CURRENT_RECORD.get()
        if record is None:
            return None
        tensor = _first(output)
        edited = record.at_site(site, layer, tensor)
        return None if edited is tensor else _replace_first(output, edited)
    return hook


def install_site_hooks(layers: Sequence[torch.nn.Module], attention_writers: Sequence[torch.nn.Module] | None,
                       mlp_writers: Sequence[torch.nn.Module] | None) -> None:
    """Register the stream-site hooks on a freshly loaded model (once; they act only for a current record)."""
    for index, layer in enumerate(layers):
        layer.register_forward_pre_hook(_layer_input_hook(index), with_kwargs=True)
        layer.register_forward_hook(_output_hook("resid_post", index))
    for site, writers in (("attn_out", attention_writers), ("mlp_out", mlp_writers)):
        for index, module in enumerate(writers or ()):
            module.register_forward_hook(_output_hook(site, index))
