"""What every page starts with: the state, the loaded model and the trace, or a clear message."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from analysis.runtime.handle import ModelHandle, ModelInfo
from analysis.runtime.models import ModelLoadError
from analysis.runtime.trace import TextError, Trace, token_cap
from components.caches.models import cached_model, cached_trace
from components.share_links import revision_warning
from components.panels.sidebar import model_allowed
from components.state import get_state, link_warnings, update_state, write_url


@dataclass
class PageContext:
    """A page's inputs: the session's state, the model handle and the text's trace."""

    state: dict[str, Any]
    handle: ModelHandle
    trace: Trace


def _fail(message: str) -> None:
    st.error(message)
    st.stop()


def _clamp_head_selection(state: dict[str, Any], handle: ModelHandle, trace: Trace) -> None:
    """Out-of-range layer/head/token from a link: say so and fall back to a valid choice."""
    info = handle.info
    fixes = {}
    if state["layer"] >= info.n_layers:
        fixes["layer"] = 0
        st.warning(f"Layer {state['layer']} does not exist in {info.name} (layers 0–{info.n_layers - 1}); "
                   "showing layer 0.")
    if state["head"] >= info.n_heads:
        fixes["head"] = 0
        st.warning(f"Head {state['head']} does not exist in {info.name} (heads 0–{info.n_heads - 1}); "
                   "showing head 0.")
    if state["token"] >= trace.n_tokens:
        fixes["token"] = -1
        st.warning(f"Token {state['token']} is past the end of the text ({trace.n_tokens} tokens); "
                   "showing the last token.")
    if fixes:
        update_state(**fixes)


def _run_through_app() -> None:
    """Re-run through app.py when a page was opened directly as the first request of a fresh server.

    Streamlit runs a ``pages/`` file on its own (old multipage mode) until some session has run
    ``st.navigation``; then the sidebar, the menu and the page layout would be missing.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_context() -> PageContext:
    """Load the model and trace for the current state; on failure show what to do and stop the page."""
    _run_through_app()
    state = get_state()
    for warning in link_warnings():
        st.warning(warning)
    write_url()
    name = state["model"]
    if not model_allowed(name):
        _fail(f"This link names the model '{name[:80]}', which this server is not configured to serve. "
              "Pick a model in the sidebar, or ask the operator to add it to ATLAS_ALLOWED_MODELS.")
    try:
        handle = cached_model(name)
    except ModelLoadError as error:
        _fail(f"{error}\n\nPick another model in the sidebar.")
    changed = revision_warning(name, handle.info.revision)
    if changed:
        st.warning(changed)
    try:
        trace = cached_trace(name, state["text"], int(state["max_tokens"]))
    except TextError as error:
        _fail(str(error))
    if trace.truncated:
        cap = token_cap(handle)
        advice = (f"raise the token cap in the sidebar, up to {cap:,}" if trace.n_tokens < cap else
                  f"{cap:,} is the most this model's pages analyse; paste the part of the text you need")
        st.warning(f"The text has {trace.n_tokens_in_text:,} tokens; only the first {trace.n_tokens:,} are analysed "
                   f"({advice}).")
    _clamp_head_selection(state, handle, trace)
    return PageContext(state, handle, trace)


def require_editable_causal_model(info: ModelInfo, encoder_note: str) -> None:
    """Stop the page with a message unless the model is a causal LM whose heads can be edited; ``encoder_note``
    says why an encoder does not fit and where to go instead."""
    if not info.causal:
        st.info(f"{info.name} is an encoder: {encoder_note}")
        st.stop()
    if not info.supports_interventions:
        st.info(" ".join(info.notes) + " Pick another model in the sidebar.")
        st.stop()


def second_trace_or_stop(trace: Trace, state: dict[str, Any], need: str, names: tuple[str, str]) -> Trace:
    """The trace of the second text (``compare_text``); if its token length differs from the text's, show both
    tokenisations under ``need`` (what requires the same length) and stop. ``names`` label the two texts."""
    second = cached_trace(state["model"], state["compare_text"], int(state["max_tokens"]))
    if second.n_tokens != trace.n_tokens:
        st.error(f"{need}: the {names[0].lower()} has {trace.n_tokens} tokens, the {names[1].lower()} "
                 f"{second.n_tokens}.\n\n{names[0]}: {' | '.join(trace.display_tokens)}\n\n"
                 f"{names[1]}: {' | '.join(second.display_tokens)}")
        st.stop()
    return second
