"""Optional sign-in with Streamlit's own ``st.login`` / ``st.user`` against an OpenID Connect provider.

Off unless the secrets file (``.streamlit/secrets.toml``) has an ``[auth]`` section with the provider
(``server_metadata_url``, ``client_id``, ``client_secret``), ``redirect_uri`` and ``cookie_secret``. When
on, every page asks for sign-in first; the ``[atlas]`` section may set ``allowed`` (e-mail domains or
addresses, ``analysis.access``) and ``shared_links = "read-only"`` (a shared link, ``?s=`` or ``?job=``,
opens without sign-in, read-only: no notes, no jobs). The signed-in name goes on notes and jobs, and the
sidebar has Sign out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from analysis.access import email_allowed

READ_ONLY_LINKS = "read-only"
LINK_PARAMS = ("s", "job")
_READ_ONLY = "atlas_read_only_link"  # this session opened a shared link without signing in


@dataclass(frozen=True)
class SignedInUser:
    """Who is signed in: the identity notes are owned by (the e-mail address, else the provider's subject)."""

    identity: str
    name: str


def _section(name: str) -> dict[str, Any]:
    if not st.secrets.load_if_toml_exists():
        return {}
    section = st.secrets.get(name)
    return section.to_dict() if section is not None else {}


def sign_in_configured() -> bool:
    """True if the secrets file names an OpenID Connect provider for ``st.login``."""
    return bool(_section("auth"))


def signed_in_user() -> SignedInUser | None:
    """The signed-in user, or None (signed out, or sign-in not configured)."""
    if not sign_in_configured() or not st.user.is_logged_in:
        return None
    email, subject = str(st.user.get("email") or ""), str(st.user.get("sub") or "")
    identity = email.lower() or subject
    return SignedInUser(identity, str(st.user.get("name") or email or subject))


def user_name() -> str:
    """The signed-in name ("" without sign-in), shown on the jobs one starts."""
    user = signed_in_user()
    return user.name if user else ""


def can_write() -> bool:
    """Whether this session may write notes and start jobs: always without sign-in, else once signed in."""
    return not sign_in_configured() or signed_in_user() is not None


def _opened_a_shared_link() -> bool:
    """True if this session came in through a shared link (remembered: the page rewrites the URL afterwards)."""
    if any(st.query_params.get(name) for name in LINK_PARAMS):
        st.session_state[_READ_ONLY] = True
    return st.session_state.get(_READ_ONLY, False)


def sign_in_gate() -> None:
    """With sign-in configured: stop the page until the user signs in and is on the allow-list (or, if allowed,
    let a shared link be viewed read-only); put who is signed in and Sign out in the sidebar."""
    if not sign_in_configured():
        return
    settings = _section("atlas")
    user = signed_in_user()
    if user is None:
        if settings.get("shared_links") == READ_ONLY_LINKS and _opened_a_shared_link():
            with st.sidebar:
                st.caption("Viewing a shared link without signing in: read-only.")
                st.button("Sign in", key="auth_sign_in", icon=":material/login:", on_click=st.login)
            return
        st.title("Attention Atlas")
        st.info("This team server asks you to sign in first.")
        st.button("Sign in", key="auth_sign_in", type="primary", icon=":material/login:", on_click=st.login)
        st.stop()
    if not email_allowed(str(st.user.get("email") or ""), list(settings.get("allowed", []))):
        st.error(f"{user.name} ({user.identity}) is not on this server's allow-list; ask its operator, or sign in "
                 "with another account.")
        st.button("Sign out", key="auth_sign_out", icon=":material/logout:", on_click=st.logout)
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{user.name}**")
        st.button("Sign out", key="auth_sign_out", icon=":material/logout:", on_click=st.logout)
