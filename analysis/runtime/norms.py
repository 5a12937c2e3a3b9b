"""A norm with its scale frozen: the linear map used to read writes to the stream one by one.

RMSNorm and LayerNorm divide by the root mean square (or standard deviation) of the whole stream, which is not
linear. Frozen at the value of the full sum, the norm becomes ``c ↦ g ⊙ P(c) · s`` (g the gain, P centring for
LayerNorm) plus its bias, so the terms of a sum each get a share and the shares add up to the norm of the sum
exactly (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"; nostalgebraist 2020, the
logit lens).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class FrozenNorm:
    """A norm with its scale frozen at one input: the linear map ``c ↦ gain ⊙ P(c) · scale``, plus ``bias``."""

    gain: torch.Tensor  # [d_model]
    bias: torch.Tensor  # [d_model] (zeros for RMSNorm)
    centred: bool  # LayerNorm subtracts the mean; RMSNorm does not
    scale: torch.Tensor  # [..., 1]: 1 / RMS (or 1 / std) of the input it was frozen at

    def linear(self, terms: torch.Tensor) -> torch.Tensor:
        """The linear part applied to terms [..., d_model] (broadcast against the frozen scale)."""
        if self.centred:
            terms = terms - terms.mean(-1, keepdim=True)
        return terms * self.gain * self.scale


def freeze_norm(norm: torch.nn.Module | None, inputs: torch.Tensor) -> FrozenNorm:
    """Freeze ``norm`` (any RMSNorm or LayerNorm variant, or None for no norm) at ``inputs`` [..., d_model].

    Gain and bias are read off the module itself by applying it to two probe vectors, so variants such as
    Gemma's ``(1 + weight)`` gain need no special case.
    """
    width = inputs.shape[-1]
    inputs = inputs.float()
    if norm is None:
        one = torch.ones(width)
        return FrozenNorm(one, torch.zeros(width), False, torch.ones(*inputs.shape[:-1], 1))
    centred = "LayerNorm" in type(norm).__name__
    epsilon = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps", None) or 1e-5
    probe = torch.ones(width)
    probe[1::2] = -1.0
    with torch.no_grad():  # constants, usable in a graph that needs gradients
        bias = norm(torch.zeros(1, width))[0].float()
        probed = norm(probe[None])[0].float() - bias
    centred_probe = probe - probe.mean() if centred else probe
    gain = probed * torch.sqrt(centred_probe.pow(2).mean() + epsilon) / centred_probe
    spread = inputs - inputs.mean(-1, keepdim=True) if centred else inputs
    scale = torch.rsqrt(spread.pow(2).mean(-1, keepdim=True) + epsilon)
    return FrozenNorm(gain, bias, centred, scale)
