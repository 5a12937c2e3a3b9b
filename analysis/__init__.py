"""Attention Atlas backend: load models, run them with attentions, score, ablate, patch and attribute heads.

Plain Python with no Streamlit import, usable from scripts, notebooks, the CLI and tests.
"""
from analysis.runtime.handle import ModelHandle, ModelInfo
from analysis.heads import parse_heads
from analysis.runtime.interventions import HeadIntervention
from analysis.methods.patching import PatchingMetric, attribution_patching, head_patching, head_position_patching, \
    residual_patching
from analysis.runtime.loading import load_model
from analysis.runtime.models import ModelLoadError
from analysis.runtime.trace import Trace, run_trace

__all__ = ["HeadIntervention", "ModelHandle", "ModelInfo", "ModelLoadError", "PatchingMetric", "Trace",
           "attribution_patching", "head_patching", "head_position_patching", "load_model", "parse_heads",
           "residual_patching", "run_trace"]
