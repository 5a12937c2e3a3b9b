"""Attention Atlas backend: load models, run them with attentions, score, ablate and attribute heads.

Plain Python with no Streamlit import, usable from scripts, notebooks, the CLI and tests.
"""
from analysis.runtime.handle import ModelHandle, ModelInfo
from analysis.heads import parse_heads
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.loading import load_model
from analysis.runtime.models import ModelLoadError
from analysis.runtime.trace import Trace, run_trace

__all__ = ["HeadIntervention", "ModelHandle", "ModelInfo", "ModelLoadError", "Trace", "load_model",
           "parse_heads", "run_trace"]
