"""Q-, K- and V-composition between heads, from their weights (Elhage et al. 2021, *A Mathematical Framework
for Transformer Circuits*).

For an earlier head A and a later head B, with W_OV = W_O·W_V and W_QK = W_Qᵀ·W_K (d_model × d_model):
Q: ‖W_QK,Bᵀ·W_OV,A‖_F, K: ‖W_QK,B·W_OV,A‖_F, V: ‖W_OV,B·W_OV,A‖_F, each divided by the product of the two
factors' Frobenius norms. None of the d_model × d_model matrices is built: every product has the form
L_B·M_B·W_O,A·W_V,A with head_dim-wide factors, and with thin QR factorisations L_B = Q·R_L and W_V,Aᵀ = Q′·R_V
(orthonormal Q, Q′ leave Frobenius norms unchanged) the score is ‖T_B·S_A‖_F / (‖T_B‖_F·‖S_A‖_F) with
T_B = R_L·M_B (head_dim × d_model) and S_A = W_O,A·R_Vᵀ (d_model × head_dim) — one matrix product per target
layer against every earlier head. The **baseline** is the mean score of random Gaussian matrices of the same
shapes (seeded), so a user sees which scores stand out. Norm gains are folded as ``analysis.runtime.weights``
describes; rotary embeddings are left out of W_QK.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis.heads import head_label
from analysis.runtime.weights import HeadWeights

KINDS = ("Q", "K", "V")
BASELINE_SAMPLES = 32


def _reader_and_writer(weights: HeadWeights, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """T_B [layers, heads, head_dim, d_model] for ``kind`` and S_A [layers, heads, d_model, head_dim]."""
    left, middle = {"Q": (weights.W_K.transpose(-1, -2), weights.W_Q),
                    "K": (weights.W_Q.transpose(-1, -2), weights.W_K),
                    "V": (weights.W_O, weights.W_V)}[kind]
    reader = torch.linalg.qr(left).R @ middle
    writer = weights.W_O @ torch.linalg.qr(weights.W_V.transpose(-1, -2)).R.transpose(-1, -2)
    return reader, writer


def _scores(reader: torch.Tensor, writer: torch.Tensor) -> torch.Tensor:
    """‖T_b·S_a‖ / (‖T_b‖‖S_a‖) for readers [B, hd, d] and writers [A, d, hd']: [B, A]."""
    n_b, hd, d = reader.shape
    n_a, _, hd_a = writer.shape
    product = reader.reshape(n_b * hd, d) @ writer.permute(1, 0, 2).reshape(d, n_a * hd_a)
    numerator = product.view(n_b, hd, n_a, hd_a).pow(2).sum(dim=(1, 3)).sqrt()
    return numerator / (reader.flatten(1).norm(dim=1)[:, None] * writer.flatten(1).norm(dim=1)[None])


def random_baseline(weights: HeadWeights, kind: str, samples: int = BASELINE_SAMPLES, seed: int = 0) -> float:
    """The mean score between random Gaussian heads with this model's shapes."""
    generator = torch.Generator().manual_seed(seed)
    hd, d = weights.W_Q.shape[-2:]
    shape = (1, samples)
    random = HeadWeights(*(torch.randn(*shape, *size, generator=generator) for size in
                           ((hd, d), (hd, d), (hd, d), (d, hd))),
                         *(torch.zeros(*shape, hd) for _ in range(3)), torch.zeros(1, d), kv_group=(), final_gain=None,
                         notes=())
    reader, writer = _reader_and_writer(random, kind)
    scores = _scores(reader[0], writer[0])  # writer a feeds reader b ≠ a: independent random heads
    return float(scores[~torch.eye(samples, dtype=torch.bool)].mean())


def composition_table(weights: HeadWeights, kind: str) -> pd.DataFrame:
    """One row per (source head in an earlier layer, target head): "source", "target", "kind", "score",
    "baseline", plus "source_layer", "source_head", "target_layer", "target_head"."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    reader, writer = _reader_and_writer(weights, kind)
    n_layers, n_heads = weights.n_layers, weights.n_heads
    blocks = []
    for target_layer in range(1, n_layers):
        scores = _scores(reader[target_layer], writer[:target_layer].flatten(0, 1)).numpy()  # [H, l·H]
        target_head, source = np.divmod(np.arange(scores.size), scores.shape[1])
        source_layer, source_head = np.divmod(source, n_heads)
        blocks.append(pd.DataFrame({"source_layer": source_layer, "source_head": source_head,
                                    "target_layer": target_layer, "target_head": target_head,
                                    "score": scores.reshape(-1)}))
    table = pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(
        columns=["source_layer", "source_head", "target_layer", "target_head", "score"])
    table.insert(0, "source", [head_label(l, h) for l, h in zip(table["source_layer"], table["source_head"])])
    table.insert(1, "target", [head_label(l, h) for l, h in zip(table["target_layer"], table["target_head"])])
    table.insert(2, "kind", kind)
    table.insert(4, "baseline", random_baseline(weights, kind))
    return table
