"""The sidebar's Share control: a short link to exactly this view, and the plain URL, each copyable."""
from __future__ import annotations

import json
from urllib.parse import urlencode

import streamlit as st

from analysis.share_store import ShareError
from analysis.viewstate import encode_state, too_long_for_url
from components.share_links import SHORT_LINK_PARAM, create_short_link
from components.state import get_state

_LAST_LINK = "atlas_short_link"
_ERROR = "atlas_share_error"


def _page_url() -> str:
    return (st.context.url or "").split("?")[0]


def _create_link(params: dict[str, str], key: str) -> None:
    try:
        st.session_state[_LAST_LINK] = (key, create_short_link(params))
    except ShareError as error:
        st.session_state[_LAST_LINK] = (key, None)
        st.session_state[_ERROR] = str(error)


def share_panel() -> None:
    """A Share button; once pressed, the short link and the plain URL of the current view."""
    params = encode_state(get_state())
    key = json.dumps(params, sort_keys=True)
    st.button("Share this view", icon=":material/share:", key="share_button", width="stretch",
              on_click=_create_link, args=(params, key),
              help="Store this exact view (model, text, page, heads, options) and get a short link for "
                   "teammates. Short links survive server restarts.")
    if _ERROR in st.session_state:
        st.error(st.session_state.pop(_ERROR))
    last = st.session_state.get(_LAST_LINK)
    if not last or last[0] != key or last[1] is None:
        return
    st.caption("Short link (copy with the icon)")
    st.code(f"{_page_url()}?{SHORT_LINK_PARAM}={last[1]}", language=None, wrap_lines=True)
    if too_long_for_url(params):
        st.caption("The text is too long for a plain URL: share the short link.")
    else:
        st.caption("Plain URL")
        st.code(f"{_page_url()}?{urlencode(params)}", language=None, wrap_lines=True)
