"""Attention Atlas backend: load models, run them with attentions, score, ablate, patch and attribute heads and edges.

Plain Python with no Streamlit import, usable from scripts, notebooks, the CLI and tests.

The names below are imported on first use (``from analysis import load_model``), so importing any submodule
does not pull in the whole backend: two threads importing different submodules at once (two sessions of a
freshly started app) cannot deadlock on each other's half-initialised modules.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HeadIntervention": "analysis.runtime.interventions",
    "ModelHandle": "analysis.runtime.handle",
    "ModelInfo": "analysis.runtime.handle",
    "ModelLoadError": "analysis.runtime.models",
    "PatchingMetric": "analysis.methods.patching",
    "Trace": "analysis.runtime.trace",
    "attribution_patching": "analysis.methods.patching",
    "edge_attribution": "analysis.methods.edge_attribution",
    "evaluate_circuit": "analysis.methods.faithfulness",
    "composition_scores": "analysis.methods.weight_scores",
    "head_patching": "analysis.methods.patching",
    "head_position_patching": "analysis.methods.patching",
    "load_model": "analysis.runtime.loading",
    "ov_top_pairs": "analysis.methods.weight_scores",
    "parse_heads": "analysis.heads",
    "path_patching": "analysis.methods.path_patching",
    "qk_attribution": "analysis.methods.qk_attribution",
    "residual_patching": "analysis.methods.patching",
    "retrieval_scores": "analysis.methods.retrieval",
    "run_trace": "analysis.runtime.trace",
    "weight_scores": "analysis.methods.weight_scores",
    "streaming_scores": "analysis.methods.streaming",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
