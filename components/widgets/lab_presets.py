"""The ablation lab's presets: heads the census labels induction or sink, a whole layer, or k random heads.

Only the inputs a preset uses are shown (k for induction and random heads, the layer, the seed). Census
presets take the heads the census *labels* with the user's thresholds and probe (the same as the census
page), so a model without induction heads gets none, and the message says what the census found.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.heads import HeadSpecError
from analysis.methods.ablation_spec import preset_heads
from analysis.runtime.handle import ModelInfo
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.models import model_title
from components.caches.census import state_census, state_thresholds
from components.widgets.lab_selection import write_selection

PRESET_NAMES = {"induction": "induction heads", "sink": "sink heads", "layer": "a whole layer",
                "random": "random heads"}
PRESET_HELP = ("Replace the selection with a set of heads, each removed (scale 0): the top k heads the head census "
               "labels induction heads, every head it labels a sink (with the census page's probe and thresholds), "
               "every head of one layer, or k heads drawn at random with a seed (a control).")
PRESET_INPUTS = {"induction": ("k",), "sink": (), "layer": ("layer",), "random": ("k", "seed")}
CENSUS_LABELS = {"induction": "induction", "sink": "sink"}
_MESSAGE = "lab_preset_message"
_PENDING = "lab_preset_pending"  # Apply was clicked; the preset is applied with the inputs as they are now


def _census_heads(preset: str, census: pd.DataFrame, k: int, info: ModelInfo, state: dict) -> tuple[list, str]:
    """The heads the census labels for a preset (the top k by score for induction) and a sentence saying so."""
    label, score = CENSUS_LABELS[preset], "induction" if preset == "induction" else "first_token"
    labelled = census[census["label"] == label]
    thresholds = state_thresholds(state)
    rule = (f"induction score ≥ {thresholds.induction:.2f} on a probe of {state['probe_len']} random tokens "
            f"written twice" if preset == "induction" else f"first-token mass ≥ {thresholds.sink:.2f}")
    if labelled.empty:
        best = census.loc[census[score].idxmax()]
        return [], (f"The census labels no head of {model_title(info.name)} as {label} ({rule}; the highest is "
                    f"{best['head']} at {best[score]:.2f}). The selection was not changed.")
    heads = preset_heads(preset, labelled, info.n_layers, info.n_heads, k=k)
    names = ", ".join(f"L{layer}H{head}" for layer, head in heads)
    shown = f"selected the top {len(heads)}: {names}" if len(heads) < len(labelled) else f"selected {names}"
    return heads, f"The census labels {len(labelled)} {label} head{'s' if len(labelled) > 1 else ''} ({rule}); {shown}."


def _apply(preset: str, info: ModelInfo, state: dict, values: dict[str, int]) -> None:
    """Replace the selection with the preset's heads (removed); keep a message for the next run."""
    try:
        if preset in CENSUS_LABELS:
            heads, message = _census_heads(preset, state_census(state), values.get("k", 5), info, state)
        else:
            heads = preset_heads(preset, None, info.n_layers, info.n_heads, **values)
            message = f"Selected {len(heads)} heads: {', '.join(f'L{layer}H{head}' for layer, head in heads)}."
    except HeadSpecError as error:
        heads, message = [], str(error)
    if heads:
        write_selection([HeadIntervention(layer, head) for layer, head in heads])
    st.session_state[_MESSAGE] = (bool(heads), message)


def _request_apply() -> None:
    st.session_state[_PENDING] = True


def presets(info: ModelInfo, state: dict) -> None:
    """Preset choice, the inputs it uses and an Apply button (replaces the selection, then reruns)."""
    preset = st.session_state.get("lab_preset", "induction")
    inputs = PRESET_INPUTS[preset]
    row = st.columns([2, 1], vertical_alignment="bottom")
    row[0].selectbox("Preset", list(PRESET_NAMES), format_func=PRESET_NAMES.get, key="lab_preset", help=PRESET_HELP)
    row[1].button("Apply", key="lab_preset_apply", width="stretch", on_click=_request_apply)
    limits = {"k": (1, info.n_total_heads, 5), "layer": (0, info.n_layers - 1, 0), "seed": (0, 10_000, 0)}
    values = {name: int(column.number_input(name, *limits[name], key=f"lab_preset_{name}"))
              for name, column in zip(inputs, st.columns(3) if inputs else [])}
    if st.session_state.pop(_PENDING, False):  # the work runs here, under a spinner, not in the click's callback
        with st.spinner(f"Finding the {PRESET_NAMES[preset]}…"):
            _apply(preset, info, state, values)
        st.rerun()
    if _MESSAGE in st.session_state:
        found, message = st.session_state.pop(_MESSAGE)
        (st.success if found else st.warning)(message)
