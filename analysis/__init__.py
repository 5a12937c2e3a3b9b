"""Attention Atlas backend: load models, run them with attentions, score, ablate and attribute heads.

Plain Python with no Streamlit import, usable from scripts, notebooks, the CLI and tests.
"""
from analysis.handle import ModelHandle, ModelInfo
from analysis.interventions import HeadIntervention, parse_heads
from analysis.loading import load_model
from analysis.models import ModelLoadError
from analysis.trace import Trace, run_trace

__all__ = ["HeadIntervention", "ModelHandle", "ModelInfo", "ModelLoadError", "Trace", "load_model",
           "parse_heads", "run_trace"]
