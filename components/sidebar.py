"""The sidebar shared by every page: model, text (with examples) and token cap."""
from __future__ import annotations

import streamlit as st

from analysis.runtime.models import EMBEDDED_MODELS, ModelLoadError, is_servable
from analysis.methods.probes import EXAMPLE_TEXTS, repeated_random_text
from components.cache import cached_model
from components.share_panel import share_panel
from components.state import bind, get_state, update_state

OTHER = "Other: local folder or hub id…"
_USER_MODELS = "atlas_user_models"


def user_named_models() -> set[str]:
    """Models this session's user typed in (allowed for them, unlike models named by a link)."""
    return st.session_state.setdefault(_USER_MODELS, set())


def model_allowed(name: str) -> bool:
    """A model may load if the server serves it or this session's user typed it in."""
    return is_servable(name) or name in user_named_models()


def _model_picker(state: dict) -> None:
    names = list(EMBEDDED_MODELS)
    current = state["model"]
    choice = st.selectbox(
        "Model", names + [OTHER], index=names.index(current) if current in names else len(names),
        format_func=lambda n: EMBEDDED_MODELS[n].title if n in EMBEDDED_MODELS else n, key="w_model_choice",
    )
    if choice != OTHER:
        if choice != current:
            update_state(model=choice, layer=0, head=0, token=-1)
            st.rerun()
        return
    typed = st.text_input("Folder or hub id", value="" if current in names else current,
                          placeholder="/path/to/model or org/name", key="w_model_typed").strip()
    if typed and typed != current:
        user_named_models().add(typed)
        update_state(model=typed, layer=0, head=0, token=-1)
        st.rerun()


def _apply_example() -> None:
    name = st.session_state["w_example"]
    if name not in EXAMPLE_TEXTS:
        return
    text = EXAMPLE_TEXTS[name]
    if not text:  # the repeated random sequence depends on the model's vocabulary
        try:
            text = repeated_random_text(cached_model(get_state()["model"]).tokenizer)
        except ModelLoadError:
            return
    update_state(text=text, token=-1)


def _example_picker() -> None:
    st.selectbox("Examples", ["—"] + list(EXAMPLE_TEXTS), key="w_example", on_change=_apply_example,
                 help="Replace the text with an example: the IOI sentence, a repeated random-token sequence "
                      "(induction), code, or a paragraph.")


def render_sidebar() -> None:
    """Draw the shared controls; changes go to the state and the URL."""
    state = get_state()
    with st.sidebar:
        _model_picker(state)
        _example_picker()
        bind(st.text_area, "text", "Text", height=140, value=state["text"], max_chars=20_000,
             help="The text to analyse. Longer than the token cap? It is truncated, with a warning.")
        bind(st.number_input, "max_tokens", "Token cap", min_value=2, max_value=1024, step=16,
             value=int(state["max_tokens"]))
        st.divider()
        share_panel()
