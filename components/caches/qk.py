"""QK attribution cached under the one memory budget: the clean run per (model, text, cap, layer), and each
explained cell."""
from __future__ import annotations

from analysis.memory_budget import memoise
from analysis.methods.qk_attribution import QKBreakdown, component_run, qk_breakdown
from analysis.runtime.cache import ActivationCache
from components.caches.models import cached_model, input_ids, with_spinner


@memoise(on_miss=with_spinner("Running the model once for the attribution…"))
def cached_component_run(model: str, text: str, max_tokens: int, layer: int) -> ActivationCache:
    """The stream and the writes entering ``layer`` at every position (serves every cell of that layer)."""
    return component_run(cached_model(model), input_ids(model, text, max_tokens), layer)


@memoise(on_miss=with_spinner("Splitting the attention logit into query × key terms…"))
def cached_qk_breakdown(model: str, text: str, max_tokens: int, layer: int, head: int, query: int, key: int
                        ) -> QKBreakdown:
    """One cell of one head explained, with its softmax competitor."""
    return qk_breakdown(cached_model(model), input_ids(model, text, max_tokens), layer, head, query, key,
                        run=cached_component_run(model, text, max_tokens, layer))
