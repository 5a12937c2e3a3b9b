"""The view state of one browser session, mirrored in the URL's query parameters.

A fresh session reads the URL (validated by ``analysis.viewstate``); afterwards the session's
state is the truth and every run writes it back to the URL, so reloading or copying the link
restores the view. A short link (``?s=<id>``) stands for the parameters stored under that id; a
state whose text is too long for a URL is written as such a short link. Widgets bind to state
fields through ``bind``.
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from analysis.viewstate import FIELDS, MAX_URL_TEXT_CHARS, encode_state, parse_state
from components.share_links import long_state_link, resolve_short_link

_STATE = "atlas_state"
_WARNINGS = "atlas_link_warnings"


def _initial_state() -> dict[str, Any]:
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    params, link_problems = resolve_short_link(params)
    state, warnings = parse_state(params)
    st.session_state[_WARNINGS] = link_problems + warnings
    return state


def get_state() -> dict[str, Any]:
    """This session's state (created from the URL on the first run)."""
    if _STATE not in st.session_state:
        st.session_state[_STATE] = _initial_state()
    return st.session_state[_STATE]


def update_state(**changes: Any) -> None:
    """Change state fields (and the widgets bound to them), then mirror the state in the URL."""
    state = get_state()
    for name, value in changes.items():
        if name not in FIELDS:
            raise KeyError(f"unknown state field {name}")
        state[name] = value
        st.session_state.pop(_widget_key(name), None)
    write_url()


def write_url() -> None:
    """Put the current state in the query parameters (only non-default fields, or a short link)."""
    wanted = encode_state(get_state())
    if len(wanted.get("text", "")) > MAX_URL_TEXT_CHARS:
        short_id = long_state_link(wanted)
        wanted = {"s": short_id} if short_id else {k: v for k, v in wanted.items() if k != "text"}
    if {k: st.query_params.get(k) for k in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def link_warnings() -> list[str]:
    """Warnings about parameters of the opening link that were ignored."""
    return st.session_state.get(_WARNINGS, [])


def _widget_key(name: str) -> str:
    return f"w_{name}"


def bind(widget: Callable[..., Any], name: str, label: str, *, transform: Callable[[Any], Any] | None = None,
         **kwargs: Any) -> Any:
    """Create ``widget`` showing state field ``name``; user changes flow back into the state and the URL.

    ``transform`` maps the widget's value to the state's value (e.g. an option label to an index).
    Pass the widget's initial value as ``value=``/``index=`` in kwargs as usual.
    """
    key = _widget_key(name)

    def on_change() -> None:
        value = st.session_state[key]
        get_state()[name] = transform(value) if transform else value
        write_url()

    return widget(label, key=key, on_change=on_change, **kwargs)
