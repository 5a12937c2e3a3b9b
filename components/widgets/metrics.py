"""Widgets choosing the importance metric and its options (loss span, log-prob target), bound to the URL."""
from __future__ import annotations

import streamlit as st

from analysis.runtime.handle import ModelHandle
from analysis.methods.importance import ABLATION_MODES
from analysis.methods.metrics import METRICS, MetricError, loss_slice, resolve_target
from analysis.runtime.trace import Trace
from components.caches.ablation import MetricKey
from components.state import bind, update_state

METRIC_HELP = ("Δ loss: change of the mean next-token loss over the text (or the span). Δ log-prob: change of the "
               "target token's log-probability at the last position. KL: divergence of the next-token "
               "distribution from the clean one (Michel et al. 2019 rank heads by such a change).")


def metric_choice(state: dict) -> str:
    """A radio for the metric; returns its name."""
    bind(st.radio, "metric", "Metric", options=list(METRICS), index=list(METRICS).index(state["metric"]),
         format_func=METRICS.get, horizontal=True, help=METRIC_HELP)
    return state["metric"]


def ablation_mode_choice(state: dict) -> str:
    """A radio for the ablation mode (zero or the reference mean); returns it."""
    bind(st.radio, "method", "Ablation", options=list(ABLATION_MODES), index=list(ABLATION_MODES).index(state["method"]),
         horizontal=True, help="Set the head's output to zero, or to its mean output over a fixed reference set of "
                               "texts (the induction probe and the built-in examples), the same at every position.")
    return state["method"]


def metric_options(handle: ModelHandle, trace: Trace, state: dict, show_span: bool = True,
                   show_target: bool = True) -> MetricKey:
    """Span and target inputs; returns the metric key (metric, span start, span end, target id)."""
    try:
        loss_slice((int(state["span_start"]), int(state["span_end"])), trace.n_tokens)
    except MetricError as error:
        st.warning(f"{error} Using the whole text.")
        update_state(span_start=0, span_end=0)
    columns = st.columns(3)
    if show_target:
        with columns[0]:
            bind(st.text_input, "target", "Target token", value=state["target"],
                 placeholder=f"top prediction ({trace.top_next[0].token!r})" if trace.top_next else "",
                 help="The token whose log-probability at the last position is measured, with its leading space "
                      "(e.g. ' Mary'). Empty: the clean model's top prediction.")
    if show_span:
        with columns[1]:
            bind(st.number_input, "span_start", "Loss span from token", min_value=0, max_value=trace.n_tokens,
                 value=min(int(state["span_start"]), trace.n_tokens),
                 help="Measure the loss only on predicted tokens from this position (0 = the whole text).")
        with columns[2]:
            bind(st.number_input, "span_end", "to token (exclusive)", min_value=0, max_value=trace.n_tokens,
                 value=min(int(state["span_end"]), trace.n_tokens), help="0 = the end of the text.")
    target_id, warning = resolve_target(handle.tokenizer, state["target"])
    if warning:
        st.warning(warning)
    return state["metric"], int(state["span_start"]), int(state["span_end"]), target_id
