"""The view state of one browser session, mirrored in the URL's query parameters.

A fresh session reads the URL (validated by ``analysis.viewstate``); afterwards the session's
state is the truth and every run writes it back to the URL, so reloading or copying the link
restores the view. A short link (``?s=<id>``) stands for the parameters stored under that id; a
state whose text is too long for a URL is written as such a short link. Widgets bind to state
fields through ``bind``.

A widget keeps the value shown in the browser as long as its key stays the same, even when the
script passes another initial value. So ``bind`` owns the widget's value in the session state: it
writes the state's value there when the widget is first drawn and again after ``update_state``
changed the field, which makes the browser show the new value (an example text, a reset token).
"""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from analysis.viewstate import FIELDS, PAGE_LOCAL_FIELDS, TEXT_FIELDS, encode_state, parse_state, too_long_for_url
from components.share_links import long_state_link, resolve_short_link

_STATE = "atlas_state"
_WARNINGS = "atlas_link_warnings"
_RESYNC = "atlas_resync_fields"  # fields changed by code whose widgets must show the new value
_PAGE = "atlas_page"  # the url path of the page the session showed last
_CARRY = "atlas_carry_to_page"  # page-local fields for the next page


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
    st.session_state.setdefault(_RESYNC, set()).update(changes)
    write_url()


def enter_page(url_path: str) -> None:
    """Note the page this run shows; coming from another page, reset the page-local fields the last one set, then
    set the ones ``carry_to_next_page`` left for this page."""
    previous = st.session_state.get(_PAGE)
    st.session_state[_PAGE] = url_path
    if previous is None or previous == url_path:
        return
    state = get_state()
    stale = {name: FIELDS[name].default for name in PAGE_LOCAL_FIELDS if state[name] != FIELDS[name].default}
    if stale:
        update_state(**stale)
    carried = st.session_state.pop(_CARRY, {})
    if carried:
        update_state(**carried)


def carry_to_next_page(**changes: Any) -> None:
    """Page-local fields (a job id) for the page the session opens next, set after its reset on entering it."""
    st.session_state[_CARRY] = changes


def write_url() -> None:
    """Put the current state in the query parameters (only non-default fields, or a short link)."""
    wanted = encode_state(get_state())
    if too_long_for_url(wanted):
        short_id = long_state_link(wanted)
        wanted = {"s": short_id} if short_id else {k: v for k, v in wanted.items() if k not in TEXT_FIELDS}
    if {k: st.query_params.get(k) for k in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def link_warnings() -> list[str]:
    """Warnings about parameters of the opening link that were ignored."""
    return st.session_state.get(_WARNINGS, [])


def _widget_key(name: str) -> str:
    return f"w_{name}"


def bind(widget: Callable[..., Any], name: str, label: str, *, transform: Callable[[Any], Any] | None = None,
         derived: bool = False, **kwargs: Any) -> Any:
    """Create ``widget`` showing state field ``name``; user changes flow back into the state and the URL.

    ``transform`` maps the widget's value to the state's value (e.g. an option label to an index).
    Pass the state's value as the widget's ``value=``, ``index=`` (into ``options``) or ``default=``, as
    usual; it is put in the widget's session-state slot when the widget is new, when the field was changed
    by ``update_state``, or when the widget's value is no longer among its options (a token position of a
    longer text). ``derived=True`` puts it there on every run: the field holds no value of its own yet (e.g. -1)
    and the widget shows one computed from other fields, which may have changed.
    """
    key = _widget_key(name)
    initial = _initial_value(kwargs)
    pending = st.session_state.setdefault(_RESYNC, set())
    if (derived or key not in st.session_state or name in pending
            or not _fits(st.session_state[key], kwargs.get("options"))):
        st.session_state[key] = initial
    pending.discard(name)

    def on_change() -> None:
        value = st.session_state[key]
        get_state()[name] = transform(value) if transform else value
        write_url()

    return widget(label, key=key, on_change=on_change, **kwargs)


def _initial_value(kwargs: dict[str, Any]) -> Any:
    """Take the widget's initial value out of its keyword arguments (``value``, ``index`` or ``default``)."""
    if "value" in kwargs:
        return kwargs.pop("value")
    if "index" in kwargs:
        return list(kwargs["options"])[kwargs.pop("index")]
    return kwargs.pop("default")


def _fits(value: Any, options: Any) -> bool:
    """True if a widget's value (or every value of a multiselect) is among its options (or it has none)."""
    if options is None:
        return True
    choices = list(options)
    return all(item in choices for item in value) if isinstance(value, list) else value in choices
