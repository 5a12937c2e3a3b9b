"""What a head writes: its output read through the unembedding (logit lens of a head) and direct logit attribution.

For a pre-norm decoder the final residual stream at a position is a sum of writes:
``r = embedding + Σ_l (Σ_h W_O[:, h] z_h + b_O,l) + Σ_l MLP_l``, where ``z_h`` is query head h's output
(the named site ``head_output``) and ``W_O[:, h]`` its slice of the output projection (with GQA every
query head has its own ``z_h`` and slice). The logits are ``W_U · RMSNorm(r)``.

Linearisation: RMSNorm divides by the root mean square of the whole stream, which is not linear. We
freeze that scale at its value in the clean run, ``s = 1/sqrt(mean(r²) + ε)``, so the final norm
becomes the linear map ``c ↦ g ⊙ c · s`` (g = the norm's weight). Each write then has a direct logit
``W_U[t] · (g ⊙ c · s)``, and the sum over all terms equals the model's logit exactly (up to float
error), because the frozen scale is the true scale of the full sum. A single term's value is what it
adds with the other terms held fixed; it ignores how the term would change the norm (Elhage et al.
2021, "A Mathematical Framework for Transformer Circuits"; nostalgebraist 2020, the logit lens).

Only causal LMs with an unembedding and editable heads (the LLaMA adapter) are supported; encoders
such as MiniLM have no unembedding, so ``LogitAttributionUnsupported`` is raised for them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis.forward import run_model
from analysis.handle import ModelHandle
from analysis.importance import heads_frame
from analysis.interventions import head_label
from analysis.tokens import token_strings


class LogitAttributionUnsupported(ValueError):
    """The model has no unembedding (encoders) or no head-level adapter."""


@dataclass(frozen=True, eq=False)
class ResidualDecomposition:
    """The final residual stream at one position split into its writes, each already through the frozen norm.

    Every array is in "normed" units: ``term · norm_scale``, so ``W_U @ term`` is its direct logit.
    """

    position: int
    norm_scale: np.ndarray  # [d_model]: g · s, the frozen final norm
    embedding: np.ndarray  # [d_model]
    heads: np.ndarray  # [layers, heads, d_model]
    attention_bias: np.ndarray  # [layers, d_model] (zeros when the output projection has no bias)
    mlp: np.ndarray  # [layers, d_model]
    logits: np.ndarray  # [vocab]: the model's own logits at the position

    @property
    def total(self) -> np.ndarray:
        """Sum of all terms: the normed final residual stream."""
        return self.embedding + self.heads.sum((0, 1)) + self.attention_bias.sum(0) + self.mlp.sum(0)


def check_supported(handle: ModelHandle) -> None:
    """Raise LogitAttributionUnsupported unless the model is a causal LM with the LLaMA-style adapter."""
    adapter = handle.adapter
    if not handle.info.causal or not getattr(adapter, "pre_norm", False) or not hasattr(adapter, "unembedding"):
        raise LogitAttributionUnsupported(
            f"{handle.info.name} has no unembedding (it is an encoder or has no head-level adapter), so heads "
            "cannot be read as logits. Direct logit attribution needs a causal LM such as smollm2-135m.")


def _frozen_norm_scale(handle: ModelHandle, final_residual: torch.Tensor) -> torch.Tensor:
    """``g · s`` of the final RMSNorm at this residual [d_model] (s = 1/RMS, frozen)."""
    norm = handle.adapter.body.norm
    variance = final_residual.float().pow(2).mean(-1, keepdim=True)
    return norm.weight.float() * torch.rsqrt(variance + norm.variance_epsilon)


def decompose(handle: ModelHandle, input_ids: torch.Tensor, position: int = -1) -> ResidualDecomposition:
    """Run the text once and split the final residual stream at ``position`` into its writes."""
    check_supported(handle)
    adapter = handle.adapter
    n_tokens = input_ids.shape[1]
    if not -n_tokens <= position < n_tokens:
        raise ValueError(f"Position {position} is outside the text ({n_tokens} tokens).")
    position %= n_tokens
    result = run_model(handle, input_ids, keep_residuals=True, keep_head_outputs=True)
    with torch.inference_mode():
        scale = _frozen_norm_scale(handle, result.residuals[-1][0, position])
        heads, biases, mlps = [], [], []
        for layer, z in enumerate(result.head_outputs):
            z_here = z[0, :, position].float()  # [heads, head_dim]
            weight = adapter.head_write_weight(layer).float()  # [d_model, heads * head_dim]
            weight = weight.view(weight.shape[0], adapter.n_heads, adapter.head_dim)
            heads.append(torch.einsum("dhk,hk->hd", weight, z_here))
            biases.append(adapter.attention_output(layer, torch.zeros_like(z[:, :, :1]))[0, 0].float())
            here = slice(position, position + 1)  # the MLP and the output projection act position by position
            mid = result.residuals[layer][:, here] + adapter.attention_output(layer, z[:, :, here])
            mlps.append(adapter.mlp_output(layer, mid)[0, 0].float())
        embedding = result.residuals[0][0, position].float()
        as_numpy = lambda tensor: (tensor * scale).cpu().numpy()  # noqa: E731
        return ResidualDecomposition(
            position=position,
            norm_scale=scale.cpu().numpy(),
            embedding=as_numpy(embedding),
            heads=as_numpy(torch.stack(heads)),
            attention_bias=as_numpy(torch.stack(biases)),
            mlp=as_numpy(torch.stack(mlps)),
            logits=result.logits[0, position].float().cpu().numpy(),
        )


def _unembedding_row(handle: ModelHandle, token_id: int) -> np.ndarray:
    with torch.inference_mode():
        return handle.adapter.unembedding()[token_id].float().cpu().numpy()


def _output_bias(handle: ModelHandle, token_id: int) -> float:
    bias = getattr(handle.model.lm_head, "bias", None)
    return 0.0 if bias is None else float(bias[token_id])


def head_attribution(handle: ModelHandle, decomposition: ResidualDecomposition, token_id: int) -> pd.DataFrame:
    """Direct logit attribution of every head to ``token_id``: head, layer, head_index, dla."""
    values = decomposition.heads @ _unembedding_row(handle, token_id)
    return heads_frame(*values.shape, dla=values)


def attribution_terms(handle: ModelHandle, decomposition: ResidualDecomposition, token_id: int) -> pd.DataFrame:
    """Every term's direct logit for ``token_id`` (embedding, heads, attention biases, MLPs, output bias).

    Columns: term, kind, layer (-1 for the embedding and output bias), dla. The column sums to the logit.
    """
    row = _unembedding_row(handle, token_id)
    n_layers, n_heads, _ = decomposition.heads.shape
    rows = [("embedding", "embedding", -1, float(decomposition.embedding @ row))]
    for layer in range(n_layers):
        head_values = decomposition.heads[layer] @ row
        rows += [(head_label(layer, head), "head", layer, float(head_values[head])) for head in range(n_heads)]
        rows.append((f"L{layer} attention bias", "attention bias", layer, float(decomposition.attention_bias[layer] @ row)))
        rows.append((f"L{layer} MLP", "mlp", layer, float(decomposition.mlp[layer] @ row)))
    rows.append(("output bias", "output bias", -1, _output_bias(handle, token_id)))
    return pd.DataFrame(rows, columns=["term", "kind", "layer", "dla"])


def head_logit_lens(handle: ModelHandle, decomposition: ResidualDecomposition, layer: int, head: int,
                    k: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tokens a head's write promotes most and suppresses most: (promoted, suppressed) with token, token_id, logit."""
    with torch.inference_mode():
        logits = handle.adapter.unembedding().float() @ torch.from_numpy(decomposition.heads[layer, head])
    tables = []
    for ids in (logits.topk(k).indices, (-logits).topk(k).indices):
        tables.append(pd.DataFrame({"token": token_strings(handle.tokenizer, ids), "token_id": ids.numpy(),
                                    "logit": logits[ids].numpy().astype(np.float64)}))
    return tables[0], tables[1]
