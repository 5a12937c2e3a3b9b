"""The ablation lab's head selection, held in the URL's ``ablate`` field.

Widgets: a heads box ("L12H3, L14H*"), a clickable layer × head grid, a mode and a 0–2 slider per
selected head, and presets (census induction or sink heads, a whole layer, seeded random heads).
Other pages add heads with ``add_head``.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from analysis.methods.ablation_spec import PRESETS, format_ablation, parse_ablation, preset_heads
from analysis.runtime.handle import ModelInfo
from analysis.heads import HeadSpecError
from analysis.runtime.interventions import MODES, HeadIntervention
from analysis.runtime.trace import Trace
from components.ablation_figures import selection_grid
from components.head_picker import add_head_click_layer, head_grid
from components.cache import cached_trace
from components.state import bind, get_state, update_state

HEAD_WIDGETS = "w_lab_"  # per-head widgets, recreated whenever the selection changes elsewhere
_BOX_ERROR = "lab_heads_error"
_PRESET_MESSAGE = "lab_preset_message"
MODE_HELP = ("zero / scale: the head's output times the scale (0 removes it). mean: the head's reference mean "
             "output (over a fixed set of texts) plus scale × the deviation from it (0 = mean-ablation). resample: "
             "the head's output on the second text (same token length) plus scale × the deviation (0 = swapped).")


def read_selection(info: ModelInfo) -> tuple[list[HeadIntervention], str | None]:
    """The selection in the state, or ([], message) if the link's ``ablate`` cannot be read."""
    spec = get_state()["ablate"]
    try:
        return parse_ablation(spec, info.n_layers, info.n_heads), None
    except HeadSpecError as error:
        return [], f"The link's head selection '{spec[:80]}' cannot be used: {error} Fix it in the Heads box."


def write_selection(selection: list[HeadIntervention]) -> None:
    """Store a new selection and reset the per-head widgets so they show it."""
    update_state(ablate=format_ablation(selection))
    for key in [key for key in st.session_state if str(key).startswith(HEAD_WIDGETS)]:
        del st.session_state[key]


def add_head(info: ModelInfo, layer: int, head: int, mode: str = "zero") -> int:
    """Add a head (removed: scale 0) to the selection unless present; returns the selection size."""
    selection, _ = read_selection(info)
    if all((edit.layer, edit.head) != (layer, head) for edit in selection):
        selection.append(HeadIntervention(layer, head, mode, 0.0))
        write_selection(selection)
    return len(selection)


def _apply_box(info: ModelInfo) -> None:
    current, _ = read_selection(info)
    try:
        write_selection(parse_ablation(st.session_state["lab_heads"], info.n_layers, info.n_heads, current))
        st.session_state.pop(_BOX_ERROR, None)
    except HeadSpecError as error:
        st.session_state[_BOX_ERROR] = str(error)


def heads_box(info: ModelInfo, selection: list[HeadIntervention], link_error: str | None) -> None:
    """A text box with the selected heads; typing 'L12H3, L14H*' (optionally L3H1:mean:0.5) replaces them."""
    shown = get_state()["ablate"] if link_error else ", ".join(edit.label for edit in selection)
    if st.session_state.get("lab_heads_shown") != shown:  # the selection changed elsewhere: show it
        st.session_state["lab_heads"] = shown
        st.session_state["lab_heads_shown"] = shown
    st.text_input("Heads", key="lab_heads", on_change=_apply_box, args=(info,),
                  placeholder="e.g. L12H3, L14H* (zero-based; L14H* = the whole layer)",
                  help="Heads to intervene on, written L{layer}H{head}; a new head starts removed (zero, scale 0). "
                       "You may add a mode and scale: L3H1:mean:0.5.")
    if st.session_state.get(_BOX_ERROR):
        st.error(f"{st.session_state[_BOX_ERROR]} The selection was not changed.")


def selection_picker(info: ModelInfo, selection: list[HeadIntervention]) -> None:
    """The clickable grid: a click adds a head (removed) or takes a selected head out."""
    figure = add_head_click_layer(selection_grid(info.n_layers, info.n_heads, selection), info.n_layers,
                                  info.n_heads, marker_size=14)
    clicked = head_grid(figure, key="lab_grid")
    if clicked is None:
        return
    remaining = [edit for edit in selection if (edit.layer, edit.head) != clicked]
    write_selection(remaining if len(remaining) < len(selection) else [*selection, HeadIntervention(*clicked)])
    st.rerun()


def _set_head(info: ModelInfo, label: str) -> None:
    mode, scale = st.session_state[f"{HEAD_WIDGETS}mode_{label}"], st.session_state[f"{HEAD_WIDGETS}scale_{label}"]
    selection, _ = read_selection(info)
    updated = [HeadIntervention(edit.layer, edit.head, mode, scale) if edit.label == label else edit
               for edit in selection]
    update_state(ablate=format_ablation(updated))


def _remove_head(info: ModelInfo, label: str) -> None:
    write_selection([edit for edit in read_selection(info)[0] if edit.label != label])


def _set_all(info: ModelInfo) -> None:
    mode, scale = st.session_state["lab_all_mode"], st.session_state["lab_all_scale"]
    write_selection([HeadIntervention(edit.layer, edit.head, mode, scale) for edit in read_selection(info)[0]])


def head_sliders(info: ModelInfo, selection: list[HeadIntervention]) -> None:
    """Per selected head: mode, scale slider 0–2, remove; plus one row setting every head at once."""
    if len(selection) > 1:
        row = st.columns([1.2, 1.5, 4, 0.6], vertical_alignment="bottom")
        row[0].markdown("**All heads**")
        row[1].selectbox("Mode", MODES, key="lab_all_mode", label_visibility="collapsed")
        row[2].slider("Scale of every head", 0.0, 2.0, 0.0, 0.05, key="lab_all_scale", label_visibility="collapsed")
        row[3].button("Set", key="lab_all_set", on_click=_set_all, args=(info,),
                      help="Give every selected head this mode and scale.")
    box = st.container(height=360) if len(selection) > 8 else st.container()
    for edit in selection:
        label = edit.label
        row = box.columns([1.2, 1.5, 4, 0.6], vertical_alignment="bottom")
        row[0].markdown(f"**{label}**")
        row[1].selectbox(f"Mode of {label}", MODES, index=MODES.index(edit.mode), key=f"{HEAD_WIDGETS}mode_{label}",
                         on_change=_set_head, args=(info, label), label_visibility="collapsed", help=MODE_HELP)
        row[2].slider(f"Scale of {label}", 0.0, 2.0, float(edit.scale), 0.05, key=f"{HEAD_WIDGETS}scale_{label}",
                      on_change=_set_head, args=(info, label), label_visibility="collapsed",
                      help="0 removes the head, 1 leaves it unchanged, 2 doubles what it writes.")
        row[3].button("✕", key=f"{HEAD_WIDGETS}remove_{label}", on_click=_remove_head, args=(info, label),
                      help=f"Take {label} out of the selection.")


def _apply_preset(info: ModelInfo, census: Callable[[], pd.DataFrame | None]) -> None:
    preset = st.session_state["lab_preset"]
    try:
        table = census() if preset in ("induction", "sink") else None
        heads = preset_heads(preset, table, info.n_layers, info.n_heads, k=int(st.session_state["lab_preset_k"]),
                             layer=int(st.session_state["lab_preset_layer"]),
                             seed=int(st.session_state["lab_preset_seed"]))
    except HeadSpecError as error:
        st.session_state[_PRESET_MESSAGE] = str(error)
        return
    if not heads:
        st.session_state[_PRESET_MESSAGE] = (f"The preset '{PRESETS[preset]}' found no heads in this model; "
                                             "the selection was not changed.")
        return
    st.session_state.pop(_PRESET_MESSAGE, None)
    write_selection([HeadIntervention(layer, head) for layer, head in heads])


def presets(info: ModelInfo, census: Callable[[], pd.DataFrame | None]) -> None:
    """Preset choice with its k / layer / seed and an Apply button (replaces the selection)."""
    row = st.columns([3, 1, 1, 1, 1], vertical_alignment="bottom")
    row[0].selectbox("Preset", list(PRESETS), format_func=PRESETS.get, key="lab_preset")
    row[1].number_input("k", 1, info.n_layers * info.n_heads, 5, key="lab_preset_k")
    row[2].number_input("layer", 0, info.n_layers - 1, 0, key="lab_preset_layer")
    row[3].number_input("seed", 0, 10_000, 0, key="lab_preset_seed")
    row[4].button("Apply", key="lab_preset_apply", on_click=_apply_preset, args=(info, census),
                  help="Replace the selection with the preset's heads (removed: zero, scale 0).")
    if st.session_state.get(_PRESET_MESSAGE):
        st.warning(st.session_state.pop(_PRESET_MESSAGE))


def resample_source(selection: list[HeadIntervention], trace: Trace, state: dict) -> str:
    """The second text "resample" heads take their output from ('' when no head resamples); stops on a bad length."""
    if not any(edit.mode == "resample" for edit in selection):
        return ""
    bind(st.text_area, "compare_text", "Second text (resample source, same token length)",
         value=state["compare_text"], height=68,
         help="Resampled heads take their output from this text at the same positions (also Compare's second text).")
    source = cached_trace(state["model"], state["compare_text"], int(state["max_tokens"]))
    if source.n_tokens != trace.n_tokens:
        st.error(f"Resampling needs a second text with the same number of tokens: it has {source.n_tokens}, the text "
                 f"has {trace.n_tokens}.\n\nText: {' | '.join(trace.display_tokens)}\n\n"
                 f"Second text: {' | '.join(source.display_tokens)}")
        st.stop()
    return state["compare_text"]
