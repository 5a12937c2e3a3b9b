"""The named places where analyses read or write inside a model, each once, with its shape.

Names follow TransformerLens' hook points (Nanda & Bloom 2022) and the residual-stream view of Elhage et al.
2021 ("A Mathematical Framework for Transformer Circuits"). Shapes use b batch rows, t tokens, d the model
width, H query heads, K key/value heads, e the head width. Every site but ``logits`` is per layer.

The stream sites are read where the model's own modules hand tensors to each other (a layer's input and
output, its attention's and MLP's outputs), so they are exactly what the model computes; ``q``/``k``/``v`` are
exactly the tensors its attention function receives (after the model's projections, q/k norms and rotary).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Union


@dataclass(frozen=True)
class Site:
    """One named place: its shape and what it holds."""

    name: str
    shape: str
    meaning: str
    quadratic: bool = False  # grows with tokens²: kept only when asked for by name


SITES: dict[str, Site] = {site.name: site for site in (
    Site("resid_pre", "[b,t,d]", "the residual stream entering the layer"),
    Site("attn_in", "[b,t,d]", "the stream every head's query, key and value read (= resid_pre of the layer)"),
    Site("q", "[b,H,t,e]", "queries as the attention receives them (after projection, q-norm and rotary)"),
    Site("k", "[b,K,t,e]", "keys as the attention receives them (one per key/value head)"),
    Site("v", "[b,K,t,e]", "values as the attention receives them (one per key/value head)"),
    Site("pattern", "[b,H,t,t]", "attention weights (query → key)", quadratic=True),
    Site("head_output", "[b,t,H,e]", "each query head's output z, before the output projection"),
    Site("attn_out", "[b,t,d]", "the attention's write to the stream (with Gemma's attention-output norm)"),
    Site("resid_mid", "[b,t,d]", "the stream after attention, before the MLP (= resid_pre + attn_out)"),
    Site("mlp_out", "[b,t,d]", "the MLP's write to the stream (with Gemma's post-feed-forward norm)"),
    Site("resid_post", "[b,t,d]", "the residual stream leaving the layer"),
)}
LOGITS = "logits"  # [b,t,vocab] (encoders: the final hidden states [b,t,d]); not per layer, always returned
STREAM_WRITE_SITES = frozenset({"attn_out", "resid_mid", "mlp_out"})  # need ModelParts.supports_stream_writes
EDITABLE_SITES = frozenset({"resid_pre", "attn_out", "mlp_out", "q", "k", "v"})
HEAD_SITES = frozenset({"q", "k", "v"})  # per-head edits index dimension 1 (query heads for q, KV heads for k/v)

SiteFilter = Callable[[str, int], bool]
SiteSelection = Union[Iterable[str], SiteFilter, None]


class UnknownSiteError(KeyError):
    """A site name that is not in SITES."""


def check_site(name: str) -> str:
    """``name`` if it is a known site, else UnknownSiteError listing the names."""
    if name not in SITES:
        raise UnknownSiteError(f"Unknown site {name!r}; sites are {', '.join(SITES)}.")
    return name


def site_filter(sites: SiteSelection) -> SiteFilter:
    """A predicate ``(site, layer) -> keep?`` from site names (every layer) or a predicate (returned as is)."""
    if sites is None:
        return lambda _site, _layer: False
    if callable(sites):
        return sites
    names = frozenset(check_site(name) for name in sites)
    return lambda site, _layer: site in names
