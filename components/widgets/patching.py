"""Widgets of the patching page, bound to the URL: the prompt pair, target and distractor, metric and direction,
and the heads patched position by position.

The clean prompt is the sidebar's text (``text``); the corrupted prompt is ``compare_text``, the same second text
the Compare page and the ablation lab's "resample" heads use, so a head sent to the lab takes its output from
the corrupted prompt.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.heads import HeadSpecError, parse_heads
from analysis.methods.metrics import resolve_target
from analysis.methods.patching import DIRECTIONS, PATCHING_METRICS
from analysis.datasets.probes import PATCHING_PAIRS, patching_pair
from analysis.runtime.handle import ModelHandle
from analysis.runtime.trace import Trace
from components.caches.patching import PatchRequest
from components.state import bind, get_state, update_state

_PAIR_MESSAGE = "patch_pair_message"
HELP = {
    "metric": "Logit difference: logit(target) − logit(distractor) at the last position (the standard metric; "
              "linear in the final residual stream). Log-prob: of the target. KL: of the next-token distribution "
              "from the clean one. Every effect is normalised: 0 = the corrupted run, 1 = the clean run.",
    "direction": "Denoise: run the corrupted prompt and restore one activation from the clean run — is it "
                 "sufficient to bring the answer back? Noise: run the clean prompt and corrupt one activation — is "
                 "it necessary? (Heimersheim & Nanda 2024)",
}


def _apply_pair(handle: ModelHandle) -> None:
    name = st.session_state["w_patch_pair"]
    if name not in PATCHING_PAIRS:
        return
    try:
        pair = patching_pair(name, handle.tokenizer)
    except ValueError as error:
        st.session_state[_PAIR_MESSAGE] = str(error)
        return
    update_state(text=pair.clean, compare_text=pair.corrupted, patch_target=pair.target,
                 patch_distractor=pair.distractor, token=-1)


def _token(handle: ModelHandle, field: str, role: str) -> int | None:
    token_id, warning = resolve_target(handle.tokenizer, get_state()[field])
    if warning:
        st.warning(f"{role}: {warning}")
    return token_id


def patching_controls(handle: ModelHandle, trace: Trace, state: dict, direction: bool = True) -> PatchRequest:
    """The pair picker, the corrupted prompt, tokens, metric and (if ``direction``) the direction; returns the
    request they define."""
    st.selectbox("Built-in pair", ["—", *PATCHING_PAIRS], format_func=lambda name: PATCHING_PAIRS.get(name, "—"),
                 key="w_patch_pair", on_change=_apply_pair, args=(handle,),
                 help="Replace both prompts, the target and the distractor with a built-in pair.")
    if st.session_state.get(_PAIR_MESSAGE):
        st.warning(st.session_state.pop(_PAIR_MESSAGE))
    st.markdown(f"**Clean prompt** (the sidebar's text): `{state['text'][:300]}`")
    bind(st.text_area, "compare_text", "Corrupted prompt (same token length)", value=state["compare_text"], height=68,
         help="The same prompt with the information removed or swapped, e.g. the other name in IOI.")
    columns = [*st.columns(2), *st.columns(2)]  # tokens, then the choices: each placeholder whole on a narrow page
    with columns[0]:
        bind(st.text_input, "patch_target", "Target token", value=state["patch_target"],
             placeholder=f"clean top ({trace.top_next[0].token!r})" if trace.top_next else "",
             help="The answer the clean prompt should give, with its leading space (' Mary').")
    with columns[1]:
        bind(st.text_input, "patch_distractor", "Distractor token", value=state["patch_distractor"],
             placeholder="corrupted top",
             help="The answer the corrupted prompt gives (' John'); used by the logit difference.")
    with columns[2]:
        bind(st.radio, "patch_metric", "Metric", options=list(PATCHING_METRICS), format_func=PATCHING_METRICS.get,
             index=list(PATCHING_METRICS).index(state["patch_metric"]), help=HELP["metric"])
    if direction:
        with columns[3]:
            bind(st.radio, "patch_direction", "Direction", options=list(DIRECTIONS), format_func=DIRECTIONS.get,
                 index=list(DIRECTIONS).index(state["patch_direction"]), help=HELP["direction"])
    return PatchRequest(state["model"], state["text"], state["compare_text"], int(state["max_tokens"]),
                        state["patch_metric"], _token(handle, "patch_target", "Target"),
                        _token(handle, "patch_distractor", "Distractor"), state["patch_direction"])


def position_heads(handle: ModelHandle, exact: pd.DataFrame, centre: float) -> tuple[tuple[int, int], ...]:
    """The heads box for the head × position grid (with a button taking the exact grid's top 3); returns them."""
    row = st.columns([4, 1], vertical_alignment="bottom")
    with row[0]:
        bind(st.text_input, "patch_heads", "Heads to patch position by position", value=get_state()["patch_heads"],
             placeholder="e.g. L23H3, L29H1", help="One run per head and position: which token's output matters.")
    top = exact.reindex((exact["effect"] - centre).abs().sort_values(ascending=False).index).head(3)
    row[1].button("Top 3 heads", key="patch_top_heads", on_click=update_state,
                  kwargs={"patch_heads": ", ".join(top["head"])},
                  help="The three heads with the largest exact effects.")
    try:
        return tuple(parse_heads(get_state()["patch_heads"], handle.info.n_layers, handle.info.n_heads))
    except HeadSpecError as error:
        st.error(f"{error} Fix it in the heads box.")
        return ()
