"""What a head writes: its output read through the unembedding (logit lens of a head) and direct logit attribution.

For a decoder the final residual stream at a position is a sum of writes:
``r = embedding + Σ_l (Σ_h W_O[:, h] z_h + b_O,l) + Σ_l MLP_l``, where ``z_h`` is query head h's output
(the named site ``head_output``) and ``W_O[:, h]`` its slice of the output projection (with GQA every
query head has its own ``z_h`` and slice). The logits are ``W_U · Norm(r)``.

Linearisation: the final norm (RMSNorm or LayerNorm) divides by the root mean square (or standard deviation)
of the whole stream, which is not linear. We freeze that scale at its value in the clean run, so the norm
becomes the linear map ``c ↦ g ⊙ P(c) · s`` (g the norm's gain, P centring for LayerNorm, identity for
RMSNorm) plus the norm's bias, which is a term of its own. Each write then has a direct logit, and the sum over
all terms equals the model's logit exactly (up to float error), because the frozen scale is the true scale of
the full sum. Layers that normalise the attention's output before adding it (Gemma 2/3) are linearised the
same way, with the scale of the layer's whole attention output. A single term's value is what it adds with
the other terms held fixed; it ignores how the term would change the norms (Elhage et al. 2021, "A
Mathematical Framework for Transformer Circuits"; nostalgebraist 2020, the logit lens). The "MLP" term of a
layer is everything the layer adds besides its heads: the MLP's write. Models with a final logit soft-cap
(Gemma 2) are attributed before the cap.

Encoders such as MiniLM have no unembedding, so ``LogitAttributionUnsupported`` is raised for them, as for
architectures whose head writes or layer restart the runtime could not find (``ModelInfo.notes``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label, heads_frame
from analysis.runtime.attention import CallRecord
from analysis.runtime.forward import run_model
from analysis.runtime.handle import ModelHandle
from analysis.runtime.norms import freeze_norm
from analysis.runtime.tokens import token_strings


class LogitAttributionUnsupported(ValueError):
    """The model has no unembedding (encoders), or its head writes cannot be read."""


@dataclass(frozen=True, eq=False)
class ResidualDecomposition:
    """The final residual stream at one position split into its writes, each already through the frozen norm.

    Every array is in "normed" units, so ``W_U @ term`` is its direct logit.
    """

    position: int
    embedding: np.ndarray  # [d_model]
    heads: np.ndarray  # [layers, heads, d_model]
    attention_bias: np.ndarray  # [layers, d_model] (zeros when the output projection has no bias)
    mlp: np.ndarray  # [layers, d_model]
    norm_bias: np.ndarray  # [d_model]: the final norm's bias (zeros for RMSNorm)
    logits: np.ndarray  # [vocab]: the model's own logits at the position (before any soft-cap)

    @property
    def total(self) -> np.ndarray:
        """Sum of all terms: the normed final residual stream."""
        return (self.embedding + self.heads.sum((0, 1)) + self.attention_bias.sum(0) + self.mlp.sum(0)
                + self.norm_bias)


def check_supported(handle: ModelHandle) -> None:
    """Raise LogitAttributionUnsupported unless heads of this model can be read as logits."""
    info, parts = handle.info, handle.parts
    if not info.causal or parts.unembedding is None:
        raise LogitAttributionUnsupported(
            f"{info.name} has no unembedding (it is an encoder), so heads cannot be read as logits. Direct logit "
            "attribution needs a causal LM such as smollm2-135m.")
    if not (parts.supports_head_writes and parts.supports_restart):
        raise LogitAttributionUnsupported(
            f"{info.name}: heads cannot be read as logits here. " + " ".join(info.notes))


def _head_writes(handle: ModelHandle, layer: int, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's write [heads, d_model] and the bias [d_model] of one layer at one position (z [heads, hd])."""
    parts, info = handle.parts, handle.info
    weight = parts.head_write_weight(layer).float().view(-1, info.n_heads, info.head_dim)
    writes = torch.einsum("dhk,hk->hd", weight, z.float())
    bias = parts.head_write_bias(layer)
    bias = torch.zeros(writes.shape[-1]) if bias is None else bias.float()
    norm = parts.attention_output_norms[layer]
    if norm is None:
        return writes, bias
    frozen = freeze_norm(norm, writes.sum(0) + bias)
    return frozen.linear(writes), frozen.linear(bias) + frozen.bias


def decompose(handle: ModelHandle, input_ids: torch.Tensor, position: int = -1) -> ResidualDecomposition:
    """Run the text once and split the final residual stream at ``position`` into its writes."""
    check_supported(handle)
    parts = handle.parts
    n_tokens = input_ids.shape[1]
    if not -n_tokens <= position < n_tokens:
        raise ValueError(f"Position {position} is outside the text ({n_tokens} tokens).")
    position %= n_tokens
    result = run_model(handle, input_ids, keep_residuals=True, keep_head_outputs=True)
    with torch.inference_mode():  # the stream after the last layer: that layer once more, from its input
        final_residual = parts.run_layers(result.residuals[-1], parts.n_layers - 1, CallRecord(parts.layer_of))
        streams = [r[0, position].float() for r in result.residuals] + [final_residual[0, position].float()]
        final = freeze_norm(parts.final_norm, streams[-1])
        heads, biases, mlps = [], [], []
        for layer, z in enumerate(result.head_outputs):
            writes, bias = _head_writes(handle, layer, z[0, position])
            heads.append(writes)
            biases.append(bias)
            mlps.append(streams[layer + 1] - streams[layer] - writes.sum(0) - bias)
        last = final_residual[:, position]
        logits = parts.unembedding(last if parts.final_norm is None else parts.final_norm(last))[0]
        as_numpy = lambda tensor: final.linear(tensor).cpu().numpy()  # noqa: E731
        return ResidualDecomposition(
            position=position,
            embedding=as_numpy(streams[0]),
            heads=as_numpy(torch.stack(heads)),
            attention_bias=as_numpy(torch.stack(biases)),
            mlp=as_numpy(torch.stack(mlps)),
            norm_bias=final.bias.cpu().numpy(),
            logits=logits.float().cpu().numpy(),
        )


def _unembedding_row(handle: ModelHandle, token_id: int) -> np.ndarray:
    with torch.inference_mode():
        return handle.parts.unembedding.weight[token_id].float().cpu().numpy()


def _output_bias(handle: ModelHandle, token_id: int) -> float:
    bias = getattr(handle.parts.unembedding, "bias", None)
    return 0.0 if bias is None else float(bias[token_id])


def head_attribution(handle: ModelHandle, decomposition: ResidualDecomposition, token_id: int) -> pd.DataFrame:
    """Direct logit attribution of every head to ``token_id``: head, layer, head_index, dla."""
    values = decomposition.heads @ _unembedding_row(handle, token_id)
    return heads_frame(*values.shape, dla=values)


def attribution_terms(handle: ModelHandle, decomposition: ResidualDecomposition, token_id: int) -> pd.DataFrame:
    """Every term's direct logit for ``token_id`` (embedding, heads, attention biases, MLPs, norm and output bias).

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
    rows.append(("final norm bias", "norm bias", -1, float(decomposition.norm_bias @ row)))
    rows.append(("output bias", "output bias", -1, _output_bias(handle, token_id)))
    return pd.DataFrame(rows, columns=["term", "kind", "layer", "dla"])


def head_logit_lens(handle: ModelHandle, decomposition: ResidualDecomposition, layer: int, head: int,
                    k: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tokens a head's write promotes most and suppresses most: (promoted, suppressed) with token, token_id, logit."""
    with torch.inference_mode():
        logits = handle.parts.unembedding.weight.float() @ torch.from_numpy(decomposition.heads[layer, head])
    tables = []
    for ids in (logits.topk(k).indices, (-logits).topk(k).indices):
        tables.append(pd.DataFrame({"token": token_strings(handle.tokenizer, ids), "token_id": ids.numpy(),
                                    "logit": logits[ids].numpy().astype(np.float64)}))
    return tables[0], tables[1]
