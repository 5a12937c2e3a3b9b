"""One activation cache: what a run kept, keyed by (site, layer), and the stream's decomposition into writes.

The final residual stream of a decoder is a sum of writes (Elhage et al. 2021, "A Mathematical Framework for
Transformer Circuits"): ``resid_post[L−1] = input + Σ_l (Σ_h W_O,h z_h + b_O,l + mlp_out_l)``, with each head's
write ``W_O,h z_h`` read through the output projection's own weights. Families that normalise the attention's
output before adding it (Gemma 2/3) are linearised with that norm's scale frozen at the layer's whole attention
output (``analysis.runtime.norms``), so the terms still add up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from analysis.heads import head_label
from analysis.runtime.architecture import ModelParts
from analysis.runtime.norms import FrozenNorm, freeze_norm
from analysis.runtime.sites import LOGITS, check_site

_ALIASES = {"attn_in": "resid_pre"}
Positions = Union[slice, Sequence[int], None]


class SiteNotKept(KeyError):
    """A site the run did not keep (or the model does not offer)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(eq=False)
class ActivationCache:
    """The sites one run kept, ``cache["resid_pre", 3]``; layers keep their absolute index whatever the start."""

    logits: torch.Tensor  # [b, t or last_logits, vocab] (encoders: the final hidden states)
    store: dict[tuple[str, int], torch.Tensor] = field(repr=False)
    parts: ModelParts = field(repr=False)
    n_heads: int = 0
    head_dim: int = 0
    start_layer: int = 0

    def __getitem__(self, key: tuple[str, int]) -> torch.Tensor:
        site, layer = key
        if site == LOGITS:
            return self.logits
        site = _ALIASES.get(check_site(site), site)
        if site == "resid_mid":
            return self._kept("resid_pre", layer) + self._kept("attn_out", layer)
        return self._kept(site, layer)

    def __contains__(self, key: tuple[str, int]) -> bool:
        site, layer = key
        site = _ALIASES.get(site, site)
        if site == "resid_mid":
            return ("resid_pre", layer) in self.store and ("attn_out", layer) in self.store
        return (site, layer) in self.store

    def _kept(self, site: str, layer: int) -> torch.Tensor:
        try:
            return self.store[site, layer]
        except KeyError:
            raise SiteNotKept(f"The run did not keep {site} of layer {layer}: ask for it with sites=(…, {site!r})"
                              + ("" if self.parts.supports_stream_writes or site not in ("attn_out", "mlp_out")
                                 else "; this model does not offer it (" + " ".join(self.parts.notes) + ")")
                              + ".") from None

    def layers(self, site: str) -> list[int]:
        """The layers at which ``site`` was kept, in order."""
        site = _ALIASES.get(check_site(site), site)
        if site == "resid_mid":
            return [layer for layer in self.layers("attn_out") if ("resid_pre", layer) in self.store]
        return sorted(layer for name, layer in self.store if name == site)

    def stack(self, site: str) -> torch.Tensor:
        """``site`` of every kept layer stacked: [layers, …]."""
        return torch.stack([self[site, layer] for layer in self.layers(site)])

    @property
    def final_stream(self) -> torch.Tensor:
        """The residual stream after the last layer [b, t, d] (needs ``resid_post`` of that layer)."""
        return self["resid_post", self.parts.n_layers - 1]

    def grad(self, site: str, layer: int) -> torch.Tensor:
        """∂metric/∂site after ``metric.backward()`` on a run with ``grad=True`` (``resid_mid``: the gradient of the
        stream after attention, which is the gradient of ``attn_out``)."""
        site = _ALIASES.get(check_site(site), site)
        tensor = self._kept("attn_out" if site == "resid_mid" else site, layer)
        if tensor.grad is None:
            raise ValueError(f"No gradient at {site} of layer {layer}: run with grad=True, then call backward().")
        return tensor.grad

    def head_writes(self, layer: int, positions: Positions = None) -> torch.Tensor:
        """Each query head's write to the stream at ``layer``: [b, t, H, d] (``W_O,h z_h``, through Gemma's
        attention-output norm with its scale frozen at the layer's whole attention output)."""
        return self.attention_writes(layer, positions)[0]

    def attention_writes(self, layer: int, positions: Positions = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention's write at ``layer`` split into (head writes [b, t', H, d], the rest [b, t', d]: the
        output projection's bias and the attention-output norm's bias), at ``positions`` (None: every token)."""
        parts = self.parts
        if parts.output_projections is None:
            raise SiteNotKept("This model's head writes cannot be read: " + " ".join(parts.notes))
        z = self._kept("head_output", layer)[:, _where(positions)].float()
        with torch.no_grad():
            weight = parts.head_write_weight(layer).float().view(-1, self.n_heads, self.head_dim)
            writes = torch.einsum("dhk,bthk->bthd", weight, z)
            bias = parts.head_write_bias(layer)
            bias = torch.zeros(writes.shape[-1]) if bias is None else bias.float()
            bias = bias.expand(*writes.shape[:2], -1)
            norm = parts.attention_output_norms[layer]
            if norm is None:
                return writes, bias
            frozen = freeze_norm(norm, writes.sum(2) + bias)
            per_head = FrozenNorm(frozen.gain, frozen.bias, frozen.centred, frozen.scale[..., None, :])
            return per_head.linear(writes), frozen.linear(bias) + frozen.bias

    def component_writes(self, positions: Positions = None) -> tuple[list[str], torch.Tensor]:
        """Every component's write to the stream: names ``input``, ``L{l}H{h}``, ``L{l} attention bias``,
        ``MLP{l}`` and writes [components, b, t', d] (t' the chosen ``positions``) that sum to the final stream.

        Needs a run from layer 0 keeping ``resid_pre`` (layer 0), ``head_output`` and ``mlp_out``.
        """
        where = _where(positions)
        names, writes = ["input"], [self["resid_pre", 0][:, where].float()]
        for layer in range(self.parts.n_layers):
            heads, bias = self.attention_writes(layer, positions)
            names += [head_label(layer, head) for head in range(self.n_heads)]
            names += [f"L{layer} attention bias", f"MLP{layer}"]
            writes += list(heads.unbind(2)) + [bias, self["mlp_out", layer][:, where].float()]
        return names, torch.stack(writes)


def _where(positions: Positions) -> slice | list[int]:
    return slice(None) if positions is None else positions
