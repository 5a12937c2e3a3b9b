"""What a head reads and writes through the vocabulary, from its weights alone (no text, no forward pass).

- Direct OV circuit (Elhage et al. 2021, *A Mathematical Framework for Transformer Circuits*):
  M_h = W_U·W_O,h·W_V,h·W_Eᵀ (row = written token, column = read token). It is never built whole: its nonzero
  eigenvalues are those of the head_dim × head_dim matrix W_V,h·(W_Eᵀ·W_U)·W_O,h, and the **copying score**
  is Σλ / Σ|λ| over them (+1 copies, −1 suppresses — copy suppression, McDougall et al. 2023).
- MAPS-style copying (Elhelo & Geva 2024, *Inferring Functionality of Attention Heads from their Parameters*):
  over a fixed, seeded sample of vocabulary tokens, the fraction of tokens t whose own token is among the top k
  of M_h's column for t, ranked among the sample's tokens; heads of layers ≥ 1 read the effective embedding
  E′ = E + MLP₀(E) (the embedding passed through layer 0's own MLP, attention left out), as MAPS does.
- Successor score (Gould et al. 2023, *Successor Heads*): on ordinal sequences (numbers, number words, days,
  months, letters), through the same embedding, the fraction of tokens whose successor ranks first among the
  sequence's tokens in M_h's column.
- QK through the vocabulary: which key tokens a query token's W_QK = W_Qᵀ·W_K scores highest at relative
  position 0 (rotary left out), through W_E.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import torch

from analysis.runtime.handle import ModelHandle
from analysis.runtime.weights import HeadWeights, WeightsUnavailable, child_module, embedding_rows, \
    read_head_weights, unembedding_rows

SAMPLE_SIZE = 1000
SAMPLE_SEED = 0
TOP_K = 10
_CHUNK = 8192
ORDINAL_SEQUENCES: dict[str, tuple[str, ...]] = {
    "numbers": tuple(str(n) for n in range(1, 21)),
    "number words": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                     "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                     "twenty"),
    "days": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "months": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December"),
    "letters": tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
}
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
_PRE_MLP_NORM_NAMES = ("pre_feedforward_layernorm", "ln_2", "post_attention_layernorm")
_POST_MLP_NORM_NAMES = ("post_feedforward_layernorm",)


def vocabulary_sample(handle: ModelHandle, size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """``size`` distinct non-special token ids, drawn with a fixed seed and sorted."""
    vocab = min(len(handle.tokenizer), handle.info.vocab_size)
    special = set(handle.tokenizer.all_special_ids)
    ids = np.array([i for i in range(vocab) if i not in special])
    chosen = np.random.default_rng(seed).choice(ids, size=min(size, len(ids)), replace=False)
    return torch.from_numpy(np.sort(chosen))


def ordinal_sequences(tokenizer) -> dict[str, list[int]]:
    """Each ordinal sequence as token ids (" 1" or "1", whichever is one token), cut at its first multi-token
    member; sequences shorter than 3 are dropped."""
    sequences = {}
    for name, words in ORDINAL_SEQUENCES.items():
        ids = []
        for word in words:
            single = next((tokens for form in (f" {word}", word)
                           if len(tokens := tokenizer.encode(form, add_special_tokens=False)) == 1), None)
            if single is None:
                break
            ids.append(single[0])
        if len(ids) >= 3:
            sequences[name] = ids
    return sequences


class Circuits:
    """A model's heads read through the vocabulary; the shared pieces (W_Eᵀ·W_U, the sample) computed once."""

    def __init__(self, handle: ModelHandle, sample_size: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED):
        self.handle = handle
        self.weights: HeadWeights = read_head_weights(handle)
        if self.weights.final_gain is None:
            raise WeightsUnavailable("This model has no unembedding (an encoder): the OV and QK circuits through "
                                     "the vocabulary are unavailable.")
        self.sample = vocabulary_sample(handle, sample_size, seed)

    @cached_property
    def embedding_unembedding(self) -> torch.Tensor:
        """W_Eᵀ·W_U [d_model, d_model] over the whole vocabulary, in chunks (never vocab × d at once)."""
        vocab = self.handle.info.vocab_size
        total = torch.zeros(self.handle.info.d_model, self.handle.info.d_model)
        for start in range(0, vocab, _CHUNK):
            ids = torch.arange(start, min(start + _CHUNK, vocab))
            total += embedding_rows(self.handle, ids).t() @ unembedding_rows(self.handle, self.weights, ids)
        return total

    def effective_embedding(self, token_ids: torch.Tensor) -> torch.Tensor:
        """E′ = E + MLP₀(E) [n, d_model]: the embedding through layer 0's own MLP (and its norms), no attention."""
        embedded = embedding_rows(self.handle, token_ids)
        layer = self.handle.parts.layers[0]
        mlp = child_module(layer, _MLP_NAMES)
        if mlp is None:
            return embedded
        names = _PRE_MLP_NORM_NAMES if self.handle.parts.attention_output_norms[0] is None \
            else _PRE_MLP_NORM_NAMES[:2]  # there post_attention_layernorm normalises the attention's output
        pre, post = child_module(layer, names), child_module(layer, _POST_MLP_NORM_NAMES)
        device = self.handle.device
        dtype = next(mlp.parameters()).dtype
        with torch.inference_mode():
            hidden = embedded.to(device, dtype)
            out = mlp(pre(hidden) if pre is not None else hidden)
            out = post(out) if post is not None else out
        return embedded + out.float().cpu()

    @cached_property
    def sample_reads(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample through W_E and through E′, each [n, d_model]."""
        return embedding_rows(self.handle, self.sample), self.effective_embedding(self.sample)

    def read_embedding(self, layer: int, plain: torch.Tensor, effective: torch.Tensor) -> torch.Tensor:
        """What heads of ``layer`` read: W_E in layer 0, E′ above (MAPS)."""
        return plain if layer == 0 else effective

    def copying_scores(self) -> np.ndarray:
        """Σλ/Σ|λ| of each head's W_V·W_Eᵀ·W_U·W_O [layers, heads]."""
        w = self.weights
        small = torch.einsum("lhvd,de,lheo->lhvo", w.W_V, self.embedding_unembedding, w.W_O)
        eigenvalues = torch.linalg.eigvals(small.double())
        return (eigenvalues.real.sum(-1) / eigenvalues.abs().sum(-1).clamp_min(1e-30)).numpy()

    def ov_columns(self, layer: int, reads: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """M_h restricted to ``written`` rows (unembedding rows) × ``reads`` columns, for every head of ``layer``:
        [heads, written, read]."""
        w = self.weights
        values = torch.einsum("hvd,nd->hvn", w.W_V[layer], reads)
        outputs = torch.einsum("md,hdv->hmv", written, w.W_O[layer])
        return outputs @ values

    @cached_property
    def sample_unembedding(self) -> torch.Tensor:
        """Unembedding rows of the sample [n, d_model]."""
        return unembedding_rows(self.handle, self.weights, self.sample)

    def maps_copying(self, k: int = TOP_K) -> np.ndarray:
        """Fraction of sample tokens whose own token is in the top k of their column of M_h [layers, heads]."""
        plain, effective = self.sample_reads
        n = len(self.sample)
        scores = np.zeros((self.weights.n_layers, self.weights.n_heads))
        for layer in range(self.weights.n_layers):
            matrix = self.ov_columns(layer, self.read_embedding(layer, plain, effective), self.sample_unembedding)
            own = matrix.diagonal(dim1=1, dim2=2)  # [heads, n]
            rank = (matrix > own[:, None, :]).sum(dim=1)  # rows beating the own token, per column
            scores[layer] = (rank < min(k, n)).float().mean(dim=1).numpy()
        return scores

    def successor_scores(self) -> tuple[np.ndarray, int]:
        """Fraction of ordinal tokens whose successor ranks first in their column [layers, heads], and how many
        tokens were scored (0: the vocabulary has no ordinal sequence of single tokens; scores NaN)."""
        sequences = list(ordinal_sequences(self.handle.tokenizer).values())
        shape = (self.weights.n_layers, self.weights.n_heads)
        if not sequences:
            return np.full(shape, np.nan), 0
        hits, total = np.zeros(shape), 0
        for ids in sequences:
            tokens = torch.tensor(ids)
            plain, effective = embedding_rows(self.handle, tokens), self.effective_embedding(tokens)
            unembedded = unembedding_rows(self.handle, self.weights, tokens)
            for layer in range(shape[0]):
                matrix = self.ov_columns(layer, self.read_embedding(layer, plain, effective), unembedded)
                best = matrix[:, :, :-1].argmax(dim=1)  # [heads, n−1]: the top written token per read token
                hits[layer] += (best == torch.arange(1, len(ids))).sum(dim=1).numpy()
            total += len(ids) - 1
        return hits / total, total

    def top_pairs(self, layer: int, head: int, k: int = TOP_K) -> pd.DataFrame:
        """The k largest entries of M_h over the sample: "read", "written" (tokens), "read_id", "written_id",
        "value"."""
        plain, effective = self.sample_reads
        matrix = self.ov_columns(layer, self.read_embedding(layer, plain, effective),
                                 self.sample_unembedding)[head]
        values, flat = matrix.flatten().topk(min(k, matrix.numel()))
        written, read = np.divmod(flat.numpy(), matrix.shape[1])
        decode = self.handle.tokenizer.decode
        return pd.DataFrame({"read": [decode([int(self.sample[i])]) for i in read],
                             "written": [decode([int(self.sample[i])]) for i in written],
                             "read_id": self.sample[read].numpy(), "written_id": self.sample[written].numpy(),
                             "value": values.numpy()})

    def token_writes(self, layer: int, head: int, token_id: int, k: int = TOP_K) -> pd.DataFrame:
        """What the head writes when it attends to ``token_id``: its column of M_h over the whole vocabulary,
        the k most promoted and k most suppressed tokens ("direction", "token", "token_id", "logit")."""
        w = self.weights
        tokens = torch.tensor([token_id])
        read = self.read_embedding(layer, embedding_rows(self.handle, tokens), self.effective_embedding(tokens))[0]
        direction = w.W_O[layer, head] @ (w.W_V[layer, head] @ read)
        return self._ranked(self._unembed_all(direction), k, ("promoted", "suppressed"))

    def query_keys(self, layer: int, head: int, token_id: int, k: int = TOP_K) -> pd.DataFrame:
        """Key tokens a query token scores highest (and lowest) under W_QK at relative position 0, through W_E."""
        w = self.weights
        query = embedding_rows(self.handle, torch.tensor([token_id]))[0]
        direction = w.W_K[layer, head].t() @ (w.W_Q[layer, head] @ query)
        return self._ranked(self._embed_all(direction), k, ("attended", "avoided"))

    def _unembed_all(self, direction: torch.Tensor) -> torch.Tensor:
        vocab = self.handle.info.vocab_size
        return torch.cat([unembedding_rows(self.handle, self.weights, slice(start, min(start + _CHUNK, vocab)))
                          @ direction for start in range(0, vocab, _CHUNK)])

    def _embed_all(self, direction: torch.Tensor) -> torch.Tensor:
        vocab = self.handle.info.vocab_size
        return torch.cat([embedding_rows(self.handle, torch.arange(start, min(start + _CHUNK, vocab))) @ direction
                          for start in range(0, vocab, _CHUNK)])

    def _ranked(self, values: torch.Tensor, k: int, names: tuple[str, str]) -> pd.DataFrame:
        usable = values[:min(len(self.handle.tokenizer), len(values))]
        top, bottom = usable.topk(k), (-usable).topk(k)
        decode = self.handle.tokenizer.decode
        rows = [(names[0], int(i), float(v)) for v, i in zip(top.values, top.indices)]
        rows += [(names[1], int(i), -float(v)) for v, i in zip(bottom.values, bottom.indices)]
        return pd.DataFrame({"direction": [r[0] for r in rows], "token": [decode([r[1]]) for r in rows],
                             "token_id": [r[1] for r in rows], "logit": [r[2] for r in rows]})
