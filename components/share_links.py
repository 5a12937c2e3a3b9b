"""Short links in the app: the process-wide share store, restoring ``?s=<id>``, creating links.

This module does not touch the session's state (``components.state`` calls it), so it has no
import cycle with it.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import streamlit as st
import sqlalchemy.exc

from analysis.runtime.models import ModelLoadError
from analysis.share_store import ShareError, ShareStore
from components.caches.models import cached_model

SHORT_LINK_PARAM = "s"
_EXPECTED_REVISION = "atlas_link_revision"
_LONG_TEXT_LINKS = "atlas_long_text_links"
DATABASE_ERRORS = (ShareError, sqlalchemy.exc.SQLAlchemyError, OSError)


@st.cache_resource(show_spinner=False)
def share_store() -> ShareStore:
    """The database of shared views and notes (created on first use)."""
    return ShareStore()


def _revision(model: str) -> str:
    try:
        return cached_model(model).info.revision
    except ModelLoadError:
        return ""


def resolve_short_link(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Replace ``s=<id>`` by the stored view's parameters; unknown or bad ids give a warning."""
    raw = params.get(SHORT_LINK_PARAM)
    if raw is None:
        return dict(params), []
    view_id = raw[-1] if isinstance(raw, (list, tuple)) and raw else raw
    try:
        view = share_store().load_view(str(view_id))
    except DATABASE_ERRORS as error:
        return {}, [f"Short links are unavailable right now ({type(error).__name__}); showing the default view."]
    if view is None:
        return {}, ["This short link does not exist (it may be mistyped or cut off); showing the default view."]
    st.session_state[_EXPECTED_REVISION] = (view.model, view.model_revision)
    return dict(view.state), []


def revision_warning(model: str, revision: str) -> str | None:
    """A warning if the opening short link was made with a different revision of this model."""
    expected = st.session_state.get(_EXPECTED_REVISION)
    if not expected or expected[0] != model or not expected[1] or expected[1] == revision:
        return None
    return (f"This link was made with {model} revision {expected[1]}; the server now has revision {revision}. "
            "Patterns and scores may differ from what your teammate saw.")


def create_short_link(params: Mapping[str, str]) -> str:
    """Store these URL parameters and return the new id (raises ShareError if the database fails)."""
    try:
        return share_store().create_view(params, _revision(str(params.get("model", ""))))
    except DATABASE_ERRORS as error:
        raise ShareError(f"Could not store the link ({type(error).__name__}); try again.") from error


def long_state_link(params: Mapping[str, str]) -> str | None:
    """The short link id standing in for a state whose text is too long for a URL (one per state)."""
    key = json.dumps(dict(params), sort_keys=True)
    links = st.session_state.setdefault(_LONG_TEXT_LINKS, {})
    if key not in links:
        try:
            links[key] = create_short_link(params)
        except ShareError:
            return None
    return links[key]
