"""What the analyses need from a transformers model, found once at load and checked, never re-implemented.

The forward pass is always the model's own code. This module only locates a few modules by their role —
the layer list, each layer's attention and output projection, the final norm, the unembedding — and learns
which attention module belongs to which layer by watching one short forward (the order of attention calls).
``ModelParts`` then offers two things the model's own ``forward`` does not:

- a *restart*: run layers ``l…L−1`` from a cached residual stream, with the model's own layer modules, the
  library's mask builders and the model's rotary embedding (the standard decoder layout: embedding, rotary,
  mask, layer list, final norm). Heads of layer l cannot change anything below l, so exact all-heads ablation
  and patching re-run only what can change.
- each head's slice of the output projection W_O, so a head's write to the residual stream can be read.

Both are checked on a short input at load: the restart must reproduce the full forward, or it is switched off
and every edited run is a full forward (``ModelParts.notes`` says so). A model whose attention does not go
through transformers' attention interface can still be viewed (patterns from ``output_attentions``) but not
edited.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, replace

import torch
import torch.utils.checkpoint
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.pytorch_utils import Conv1D

from analysis.runtime.attention import CALL_KEYWORD, CallRecord
from analysis.runtime.site_hooks import install_site_hooks, recording

ENCODER_TYPES = frozenset({"bert", "roberta", "distilbert", "electra", "xlm-roberta", "camembert", "deberta",
                           "deberta-v2", "albert", "mpnet"})
_OUTPUT_PROJECTION_NAMES = ("o_proj", "out_proj", "c_proj", "dense", "out_lin", "o")
_FINAL_NORM_NAMES = ("norm", "final_layer_norm", "ln_f", "norm_f", "final_layernorm", "final_norm")
_CHECK_TOLERANCE = 1e-4


def is_causal_config(config) -> bool:
    """The one rule for "is this a causal language model": every architecture but the listed encoders."""
    return getattr(config, "model_type", "") not in ENCODER_TYPES


def text_config(config):
    """The language-model part of a (possibly multimodal) config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


@dataclass(frozen=True, eq=False)
class ModelParts:
    """Named pieces of one loaded model and what they allow. Read-only: shared by every caller."""

    causal: bool
    layers: tuple[torch.nn.Module, ...]
    layer_of: dict[int, int]  # id(attention module) -> layer index
    output_projections: tuple[torch.nn.Module, ...] | None  # per layer: the attention output projection
    attention_output_norms: tuple[torch.nn.Module | None, ...]  # per layer: a norm on the attention's write (Gemma)
    final_norm: torch.nn.Module | None
    unembedding: torch.nn.Module | None
    logit_softcap: float | None
    rotary: torch.nn.Module | None
    config: object
    supports_interventions: bool
    supports_restart: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    attention_writers: tuple[torch.nn.Module, ...] | None = None  # per layer: the module whose output is attn_out
    mlp_writers: tuple[torch.nn.Module, ...] | None = None  # per layer: the module whose output is mlp_out
    parallel_residual: bool = False  # the MLP reads resid_pre, not resid_mid (GPT-NeoX)
    supports_stream_writes: bool = False  # resid_post = resid_pre + attn_out + mlp_out, checked at load

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return len(self.layers)

    @property
    def supports_head_writes(self) -> bool:
        """True if each head's write to the residual stream can be read (census write norms, attribution)."""
        return self.supports_interventions and self.output_projections is not None

    def head_write_weight(self, layer: int) -> torch.Tensor:
        """The output projection of ``layer`` as [d_model, heads · head_dim]."""
        projection = self.output_projections[layer]
        return projection.weight.t() if isinstance(projection, Conv1D) else projection.weight

    def head_write_bias(self, layer: int) -> torch.Tensor | None:
        """The output projection's bias [d_model], or None."""
        return getattr(self.output_projections[layer], "bias", None)

    @property
    def layer_types(self) -> list[str]:
        """Per layer "full_attention" or "sliding_attention", from the config as the model's own mask builders read it."""
        layer_types = getattr(self.config, "layer_types", None)
        sliding = getattr(self.config, "sliding_window", None) is not None
        return list(layer_types) if layer_types else ["sliding_attention" if sliding else "full_attention"] * len(
            self.layers)

    @property
    def causal_layers(self) -> frozenset[int]:
        """Layers of a decoder whose mask (inputs without padding) is exactly causal."""
        if not self.causal:
            return frozenset()
        return frozenset(index for index, kind in enumerate(self.layer_types) if kind == "full_attention")

    def layer_inputs(self, residual: torch.Tensor) -> list[dict]:
        """The keywords every layer receives for a sequence like ``residual`` [batch, tokens, d_model]."""
        position_ids = torch.arange(residual.shape[1], device=residual.device)[None]
        types = self.layer_types
        masks, rotations = {}, {}
        for kind in set(types):
            if self.causal:
                builder = create_sliding_window_causal_mask if kind == "sliding_attention" else create_causal_mask
                masks[kind] = builder(config=self.config, inputs_embeds=residual, attention_mask=None, cache=None,
                                      position_ids=position_ids)
            else:
                masks[kind] = None
            if self.rotary is not None:
                per_type = "layer_type" in inspect.signature(self.rotary.forward).parameters
                rotations[kind] = (self.rotary(residual, position_ids, kind) if per_type
                                   else self.rotary(residual, position_ids=position_ids))
        inputs = []
        for kind in types:
            keywords = {"attention_mask": masks[kind], "position_ids": position_ids}
            if self.rotary is not None:
                keywords["position_embeddings"] = rotations[kind]
            inputs.append(keywords)
        return inputs

    def run_layers(self, residual: torch.Tensor, start: int, record: CallRecord,
                   residuals: list[torch.Tensor] | None = None, checkpoint: bool = False,
                   end: int | None = None) -> torch.Tensor:
        """Run layers ``start…end−1`` (``end``: all layers) from the residual stream entering ``start``; returns
        the stream they leave (the final stream when they run to the end).

        If ``residuals`` is a list, the stream entering each layer is appended to it. ``checkpoint`` keeps only
        each layer's input for the backward pass and recomputes the layer there (long texts with gradients).
        """
        inputs = self.layer_inputs(residual)
        for index in range(start, len(self.layers) if end is None else end):
            if residuals is not None:
                residuals.append(residual)
            layer = functools.partial(_run_layer, self.layers[index], record, inputs[index])
            residual = (torch.utils.checkpoint.checkpoint(layer, residual, use_reentrant=False) if checkpoint
                        else layer(residual))
        return residual

    def readout(self, final_residual: torch.Tensor) -> torch.Tensor:
        """Logits from the final residual stream (encoders: the hidden states themselves)."""
        hidden = final_residual if self.final_norm is None else self.final_norm(final_residual)
        if self.unembedding is None or not self.causal:
            return hidden
        logits = self.unembedding(hidden)
        if self.logit_softcap:
            logits = torch.tanh(logits / self.logit_softcap) * self.logit_softcap
        return logits


def _run_layer(layer: torch.nn.Module, record: CallRecord, keywords: dict, residual: torch.Tensor) -> torch.Tensor:
    """One layer on ``residual`` for ``record`` (set again when a checkpointed layer is recomputed)."""
    with recording(record):
        output = layer(residual, **keywords, **{CALL_KEYWORD: record})
    return output[0] if isinstance(output, tuple) else output


def _layer_list(body: torch.nn.Module, n_layers: int) -> tuple[torch.nn.Module, ...] | None:
    for _, module in body.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            return tuple(module)
    return None


def _output_projection(layer: torch.nn.Module, width: int) -> torch.nn.Module | None:
    """The attention's output projection inside a layer: a linear map from heads·head_dim, named like one."""
    for name, module in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in _OUTPUT_PROJECTION_NAMES or "att" not in name:
            continue
        if isinstance(module, torch.nn.Linear) and module.in_features == width:
            return module
        if isinstance(module, Conv1D) and module.weight.shape[0] == width:
            return module
    return None


def _attention_output_norm(layer: torch.nn.Module) -> torch.nn.Module | None:
    """A norm applied to the attention's output before the residual add (Gemma 2/3, OLMo 2), else None.

    Such layers name it ``post_attention_layernorm`` and also have a feed-forward norm of their own; in LLaMA-style
    layers the same name is the norm *before* the MLP.
    """
    if hasattr(layer, "pre_feedforward_layernorm") or hasattr(layer, "post_feedforward_layernorm"):
        return getattr(layer, "post_attention_layernorm", None)
    return None


def _mlp_writer(layer: torch.nn.Module) -> torch.nn.Module | None:
    """The module whose output a layer adds to the stream as its MLP's write: a post-feed-forward norm
    (Gemma 2/3, OLMo 2) or the MLP itself."""
    writer = getattr(layer, "post_feedforward_layernorm", None) or getattr(layer, "mlp", None)
    return writer if isinstance(writer, torch.nn.Module) else None


def _final_norm(body: torch.nn.Module) -> torch.nn.Module | None:
    return next((getattr(body, name) for name in _FINAL_NORM_NAMES if isinstance(getattr(body, name, None),
                                                                                 torch.nn.Module)), None)


def _check_input(vocab_size: int) -> torch.Tensor:
    return (torch.arange(3, 15) % vocab_size)[None]


def find_parts(model: torch.nn.Module, causal: bool, n_heads: int, head_dim: int) -> ModelParts:
    """Locate the named pieces of ``model`` and check what they allow with one short forward."""
    config = text_config(model.config)
    body = model.base_model
    n_layers = config.num_hidden_layers
    notes: list[str] = []
    layers = _layer_list(body, n_layers) or ()
    ids = _check_input(config.vocab_size).to(next(model.parameters()).device)
    watch = CallRecord(layer_of={})
    with torch.inference_mode():
        output = model(ids, output_hidden_states=True, use_cache=False, **{CALL_KEYWORD: watch})
    order = list(dict.fromkeys(watch.call_order))
    editable = bool(layers) and len(order) == n_layers == len(watch.call_order)
    if not editable:
        notes.append(f"{type(model).__name__} does not route its attention through transformers' attention "
                     "interface, so its heads cannot be edited: the pattern views work, interventions do not.")
    projections = tuple(_output_projection(layer, n_heads * head_dim) for layer in layers)
    by_id = {id(module): module for module in model.modules()}
    attention_modules = [by_id[key] for key in order]
    norms = tuple(_attention_output_norm(layer) for layer in layers)
    writers = (tuple(norm or attention for norm, attention in zip(norms, attention_modules)),
               tuple(_mlp_writer(layer) for layer in layers)) if editable and causal else (None, None)
    if writers[1] is not None and not all(writers[1]):
        writers = (None, None)
    parts = ModelParts(
        causal=causal, layers=layers, layer_of={module: index for index, module in enumerate(order)},
        output_projections=projections if projections and all(p is not None for p in projections) else None,
        attention_output_norms=norms,
        final_norm=_final_norm(body) if causal else None,
        unembedding=model.get_output_embeddings() if causal else None,
        logit_softcap=getattr(config, "final_logit_softcapping", None) if causal else None,
        rotary=getattr(body, "rotary_emb", None), config=config, supports_interventions=editable,
        supports_restart=False, notes=tuple(notes), attention_writers=writers[0], mlp_writers=writers[1],
        parallel_residual=any(getattr(layer, "use_parallel_residual", False) for layer in layers),
    )
    if editable:
        if not getattr(model, "_atlas_site_hooks", False):
            install_site_hooks(layers, parts.attention_writers, parts.mlp_writers)
            model._atlas_site_hooks = True
        reference = output.logits if causal else output.last_hidden_state
        parts = _with_restart_check(parts, output.hidden_states, reference)
        parts = _with_stream_writes_check(parts, model, ids)
    return parts


def _with_stream_writes_check(parts: ModelParts, model: torch.nn.Module, ids: torch.Tensor) -> ModelParts:
    """Offer attn_out, resid_mid and mlp_out only if every layer's output is its input plus those two writes."""
    if parts.mlp_writers is None:
        return parts
    wanted = ("resid_pre", "attn_out", "mlp_out", "resid_post")
    record = CallRecord(parts.layer_of, keep=lambda site, _layer: site in wanted)
    with torch.inference_mode(), recording(record):
        model(ids, use_cache=False, **{CALL_KEYWORD: record})
    store = record.store
    if all(torch.allclose(store["resid_pre", layer] + store["attn_out", layer] + store["mlp_out", layer],
                          store["resid_post", layer], atol=_CHECK_TOLERANCE, rtol=_CHECK_TOLERANCE)
           for layer in range(parts.n_layers)):
        return replace(parts, supports_stream_writes=True)
    note = ("The MLP's and attention's writes to the stream could not be read for this architecture: "
            "the sites attn_out, resid_mid and mlp_out are unavailable.")
    return replace(parts, notes=parts.notes + (note,))


def _with_restart_check(parts: ModelParts, hidden_states: tuple[torch.Tensor, ...],
                        reference: torch.Tensor) -> ModelParts:
    """Enable the restart only if running the model's layers from a cached stream reproduces the full forward."""
    try:
        with torch.inference_mode():
            matches = all(
                torch.allclose(parts.readout(parts.run_layers(hidden_states[start], start, CallRecord({}))),
                               reference, atol=_CHECK_TOLERANCE, rtol=_CHECK_TOLERANCE)
                for start in {0, parts.n_layers // 2})
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as error:
        matches, reason = False, f"{type(error).__name__}: {error}"
    else:
        reason = "its layers, run from a cached residual stream, did not reproduce the full forward"
    if matches:
        return replace(parts, supports_restart=True)
    note = f"Layer restart is off for this architecture ({reason[:200]}): edited runs are full forwards."
    return replace(parts, notes=parts.notes + (note,))

