"""The ablation lab's head selection, held in the URL's ``ablate`` field.

Widgets: a heads box ("L12H3, L14H*"), a clickable layer × head grid, and per selected head one
intervention read as a single idea — what its output moves toward (nothing: scaled; its mean; the second
text's output) and how much of its own output it keeps (0 replaced … 1 unchanged … 2 doubled), or "→ streaming":
the head sees only the first tokens and a recent window (a streaming head, Xiao et al. 2024, DuoAttention) — with
the result in words ("removed", "×1.50", "replaced by its mean", "sees the first 4 + last 64 tokens"). Presets
are in ``components.widgets.lab_presets``.
Other pages add heads with ``add_head``.
"""
from __future__ import annotations

from typing import Sequence

import streamlit as st

from analysis.heads import HeadSpecError
from analysis.methods.ablation_spec import MAX_WINDOW, format_ablation, parse_ablation
from analysis.runtime.handle import ModelInfo
from analysis.runtime.interventions import DEFAULT_SINK, DEFAULT_WINDOW, STREAM, HeadIntervention
from analysis.runtime.trace import Trace
from components.caches.ablation import Selection
from components.figures.ablation import selection_grid
from components.page import second_trace_or_stop
from components.widgets.head_picker import head_grid
from components.figures.grids import add_head_click_layer
from components.state import bind, get_state, update_state

HEAD_WIDGETS = "w_lab_"  # per-head widgets; they show the selection again whenever it changes elsewhere
_STALE = "lab_widgets_stale"
_BOX_ERROR = "lab_heads_error"
TOWARD = {"zero": "scale", "mean": "→ mean", "resample": "→ 2nd text", STREAM: "→ streaming"}  # "scale": as zero
TOWARD_HELP = ("What the head's output moves toward. scale: nothing, the output is multiplied (0 removes the head). "
               "→ mean: its reference mean output over a fixed set of texts (0 = mean-ablation). → 2nd text: its "
               "output at the same position on the second text, of the same token length (0 = resampled). "
               f"→ streaming: the head attends only to the first {DEFAULT_SINK} tokens and a recent window, "
               "renormalised (a streaming head).")
KEEP_HELP = "How much of the head's own output is kept: 0 = fully replaced, 1 = unchanged, 2 = its deviation doubled."
WINDOW_HELP = (f"Recent tokens the streaming head still sees (the query's own included), besides the first "
               f"{DEFAULT_SINK}; a window covering the text leaves the head unchanged.")
_TARGETS = {"mean": "its mean", "resample": "the 2nd text"}


def effect(edit: HeadIntervention) -> str:
    """What an intervention does to the head, in words ("removed", "×1.50", "replaced by its mean", …)."""
    if edit.mode == STREAM:
        return f"sees the first {DEFAULT_SINK} + last {edit.window} tokens"
    scale, target = edit.scale, _TARGETS.get(edit.mode)
    if scale == 1:
        return "unchanged"
    if target is None:
        return "removed" if scale == 0 else f"×{scale:.2f}"
    if scale == 0:
        return f"replaced by {target}"
    if scale < 1:
        return f"{1 - scale:.0%} of the way to {target}"
    return f"×{scale:.2f} away from {target}"


def read_selection(info: ModelInfo) -> tuple[Selection, str | None]:
    """The selection in the state, parsed once, or ((), message) if the link's ``ablate`` cannot be read."""
    spec = get_state()["ablate"]
    try:
        return tuple(parse_ablation(spec, info.n_layers, info.n_heads)), None
    except HeadSpecError as error:
        return (), f"The link's head selection '{spec[:80]}' cannot be used: {error} Fix it in the Heads box."


def write_selection(selection: Sequence[HeadIntervention]) -> None:
    """Store a new selection; the per-head widgets show it when they are drawn next."""
    update_state(ablate=format_ablation(selection))
    st.session_state[_STALE] = True


def add_head(info: ModelInfo, layer: int, head: int, mode: str = "zero") -> int:
    """Add a head (removed: scale 0) to the selection unless present; returns the selection size."""
    selection, _ = read_selection(info)
    if all((edit.layer, edit.head) != (layer, head) for edit in selection):
        selection = (*selection, HeadIntervention(layer, head, mode, 0.0))
        write_selection(selection)
    return len(selection)


def _apply_box(info: ModelInfo) -> None:
    current, _ = read_selection(info)
    try:
        write_selection(parse_ablation(st.session_state["lab_heads"], info.n_layers, info.n_heads, current))
        st.session_state.pop(_BOX_ERROR, None)
    except HeadSpecError as error:
        st.session_state[_BOX_ERROR] = str(error)


def heads_box(info: ModelInfo, selection: Selection, link_error: str | None) -> None:
    """A text box with the selected heads; typing 'L12H3, L14H*' (optionally L3H1:mean:0.5) replaces them."""
    shown = get_state()["ablate"] if link_error else ", ".join(edit.label for edit in selection)
    if st.session_state.get("lab_heads_shown") != shown:  # the selection changed elsewhere: show it
        st.session_state["lab_heads"] = shown
        st.session_state["lab_heads_shown"] = shown
    st.text_input("Heads", key="lab_heads", on_change=_apply_box, args=(info,),
                  placeholder="e.g. L12H3, L14H* (zero-based; L14H* = the whole layer)",
                  help="Heads to intervene on, written L{layer}H{head}; a new head starts removed (zero, scale 0). "
                       "You may add a mode and scale: L3H1:mean:0.5, or make it a streaming head that sees the "
                       f"first {DEFAULT_SINK} and the last 64 tokens: L3H1:stream:64.")
    if st.session_state.get(_BOX_ERROR):
        st.error(f"{st.session_state[_BOX_ERROR]} The selection was not changed.")


def selection_picker(info: ModelInfo, selection: Selection) -> None:
    """The clickable grid: a click adds a head (removed) or takes a selected head out."""
    figure = add_head_click_layer(selection_grid(info.n_layers, info.n_heads, selection), info.n_layers,
                                  info.n_heads, marker_size=14, click_action="click to add or remove it")
    clicked = head_grid(figure, key="lab_grid")
    st.caption("Click a cell to add that head (removed) or to take it out.")
    if clicked is None:
        return
    remaining = [edit for edit in selection if (edit.layer, edit.head) != clicked]
    write_selection(remaining if len(remaining) < len(selection) else [*selection, HeadIntervention(*clicked)])
    st.rerun()


def _seed(key: str, value) -> None:
    """Give a per-head widget the selection's value when it is new or the selection changed elsewhere."""
    if st.session_state.get(_STALE) or key not in st.session_state:
        st.session_state[key] = value


def _row_edit(key: str, layer: int, head: int) -> HeadIntervention:
    """The intervention a row's widgets now say (the control that is not shown keeps its last value)."""
    state = st.session_state
    return HeadIntervention(layer, head, state[f"{HEAD_WIDGETS}mode_{key}"],
                            state.get(f"{HEAD_WIDGETS}scale_{key}", 0.0),
                            int(state.get(f"{HEAD_WIDGETS}window_{key}", DEFAULT_WINDOW)))


def _set_head(info: ModelInfo, label: str) -> None:
    selection, _ = read_selection(info)
    updated = [_row_edit(label, edit.layer, edit.head) if edit.label == label else edit for edit in selection]
    update_state(ablate=format_ablation(updated))


def _remove_head(info: ModelInfo, label: str) -> None:
    write_selection([edit for edit in read_selection(info)[0] if edit.label != label])


def _set_all(info: ModelInfo) -> None:
    write_selection([_row_edit("all", edit.layer, edit.head) for edit in read_selection(info)[0]])


def _intervention_row(name: str, note: str, key: str, edit: HeadIntervention, on_change, args: tuple) -> list:
    """One intervention on two lines: the name with the effect in words (and room for a button), then what the
    output moves toward and how much of it is kept (a streaming head: its window). Returns the first line's
    columns."""
    top = st.columns([6, 1], vertical_alignment="center")
    top[0].markdown(f"**{name}** · :small[{note}]")
    _seed(f"{HEAD_WIDGETS}mode_{key}", "zero" if edit.mode == "scale" else edit.mode)
    _seed(f"{HEAD_WIDGETS}scale_{key}", float(edit.scale))
    _seed(f"{HEAD_WIDGETS}window_{key}", int(edit.window))
    controls = st.columns([1.2, 2], vertical_alignment="center")
    controls[0].selectbox(f"Toward ({name})", list(TOWARD), format_func=TOWARD.get, key=f"{HEAD_WIDGETS}mode_{key}",
                          on_change=on_change, args=args, label_visibility="collapsed", help=TOWARD_HELP)
    if edit.mode == STREAM:
        controls[1].number_input(f"Window ({name})", 0, MAX_WINDOW, step=16, key=f"{HEAD_WIDGETS}window_{key}",
                                 on_change=on_change, args=args, label_visibility="collapsed", help=WINDOW_HELP)
    else:
        controls[1].slider(f"Kept ({name})", 0.0, 2.0, step=0.05, key=f"{HEAD_WIDGETS}scale_{key}",
                           on_change=on_change, args=args, label_visibility="collapsed", help=KEEP_HELP)
    return top


def head_sliders(info: ModelInfo, selection: Selection) -> None:
    """Per selected head one intervention (and ✕ to take it out); with several heads, first one that sets every
    head at once as soon as it changes."""
    if len(selection) > 1:
        same = len({(edit.mode, edit.scale, edit.window) for edit in selection}) == 1
        common = selection[0] if same else HeadIntervention(0, 0, "zero", 1.0)  # mixed: shown as "unchanged"
        note = effect(common) if same else "heads differ: each keeps its own setting until you change this row"
        _intervention_row("All heads", note, "all", common, _set_all, (info,))
    with st.container(height=420) if len(selection) > 5 else st.container():
        for edit in selection:
            label = edit.label
            top = _intervention_row(label, effect(edit), label, edit, _set_head, (info, label))
            top[1].button("✕", key=f"{HEAD_WIDGETS}remove_{label}", on_click=_remove_head, args=(info, label),
                          type="tertiary", help=f"Take {label} out of the selection.")
    st.session_state[_STALE] = False


def resample_source(selection: Selection, trace: Trace, state: dict) -> str:
    """The second text "resample" heads take their output from ('' when no head resamples); stops on a bad length."""
    if not any(edit.mode == "resample" for edit in selection):
        return ""
    bind(st.text_area, "compare_text", "Second text (resample source, same token length)",
         value=state["compare_text"], height=68,
         help="Resampled heads take their output from this text at the same positions (also Compare's second text).")
    second_trace_or_stop(trace, state, "Resampling needs a second text with the same number of tokens",
                         ("Text", "Second text"))
    return state["compare_text"]
