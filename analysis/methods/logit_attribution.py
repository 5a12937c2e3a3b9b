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
layer is the MLP's write (the site ``mlp_out``). Models with a final logit soft-cap
(Gemma 2) are attributed before the cap.

Encoders such as MiniLM have no unembedding, so ``LogitAttributionUnsupported`` is raised for them, as for
architectures whose head or MLP writes the runtime could not read (``ModelInfo.notes``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label, heads_frame
from analysis.runtime.forward import run_with_cache
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
    if not (parts.supports_head_writes and parts.supports_stream_writes):
        raise LogitAttributionUnsupported(
            f"{info.name}: heads cannot be read as logits here. " + " ".join(info.notes))


def decompose(handle: ModelHandle, input_ids: torch.Tensor, position: int = -1) -> ResidualDecomposition:
    """Run the text once and split the final residual stream at ``position`` into its writes."""
    check_supported(handle)
    parts = handle.parts
    n_tokens = input_ids.shape[1]
    if not -n_tokens <= position < n_tokens:
        raise ValueError(f"Position {position} is outside the text ({n_tokens} tokens).")
    position %= n_tokens
    last = parts.n_layers - 1
    cache = run_with_cache(handle, input_ids, sites=lambda site, layer: site in ("head_output", "mlp_out") or (
        site, layer) in (("resid_pre", 0), ("resid_post", last)))
    with torch.inference_mode():
        stream = cache.final_stream[:, position]
        final = freeze_norm(parts.final_norm, stream[0].float())
        writes = [cache.attention_writes(layer, [position]) for layer in range(parts.n_layers)]
        logits = parts.unembedding(stream if parts.final_norm is None else parts.final_norm(stream))[0]
        as_numpy = lambda tensor: final.linear(tensor).cpu().numpy()  # noqa: E731
        return ResidualDecomposition(
            position=position,
            embedding=as_numpy(cache["resid_pre", 0][0, position].float()),
            heads=as_numpy(torch.stack([heads[0, 0] for heads, _ in writes])),
            attention_bias=as_numpy(torch.stack([bias[0, 0] for _, bias in writes])),
            mlp=as_numpy(cache.stack("mlp_out")[:, 0, position].float()),
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
