"""Team notes on heads: the panel in the head view (write, edit and delete your own, earlier versions), and the
notes other views mark heads with."""
from __future__ import annotations

import datetime
import html

import streamlit as st

from analysis.share_store import MAX_NOTE_CHARS, HeadNote, ShareError, may_change, notes_by_head
from components.auth import can_write, signed_in_user
from components.share_links import DATABASE_ERRORS, share_store

_AUTHOR = "atlas_note_author"
_NOTE_ERROR = "atlas_note_error"


def model_notes(model: str) -> list[HeadNote]:
    """Every note on this model's heads (an empty list if the database is unavailable)."""
    try:
        return share_store().notes(model)
    except DATABASE_ERRORS:
        return []


def noted_heads(model: str) -> set[tuple[int, int]]:
    """(layer, head) of every head with at least one note."""
    return {(note.layer, note.head) for note in model_notes(model)}


def notes_column(model: str, heads: list[str]) -> list[str]:
    """The notes of each head label ('L3H2'), joined, in the given order (for tables and CSV)."""
    joined = notes_by_head(model_notes(model))
    return [joined.get(head, "") for head in heads]


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _note_line(note: HeadNote) -> str:
    label = f" **[{html.escape(note.label)}]**" if note.label else ""
    edited = f" (edited {_when(note.updated_at)})" if note.updated_at else ""
    return f"*{html.escape(note.author)}*{label}: {html.escape(note.text)}{edited}"


def _editor() -> tuple[str, str]:
    """(name, identity) of whoever writes now: the signed-in user, else the typed name and no identity."""
    user = signed_in_user()
    return (user.name, user.identity) if user else (st.session_state.get(_AUTHOR, ""), "")


def _history(note: HeadNote) -> None:
    try:
        versions = share_store().note_history(note.id)
    except DATABASE_ERRORS:
        return
    if versions:
        with st.expander(f"Earlier versions ({len(versions)})"):
            st.markdown("\n".join(f"- {_when(v.written_at)} *{html.escape(v.author)}*: {html.escape(v.text)} "
                                  f"— replaced by *{html.escape(v.replaced_by)}* on {_when(v.replaced_at)}"
                                  for v in versions))


def _note_item(note: HeadNote) -> None:
    """One note, with Edit / Delete for whoever may change it, and its earlier versions."""
    st.markdown(_note_line(note))
    _, identity = _editor()
    if can_write() and not may_change(note, identity):
        st.caption(f"Only its author ({note.author}) can edit or delete this note.")
    elif can_write():
        with st.expander("Edit or delete"):
            with st.form(f"note_edit_{note.id}_{note.revision}", border=False):
                st.text_area("New text", value=note.text, max_chars=MAX_NOTE_CHARS, key=f"note_edit_text_{note.id}")
                st.text_input("Label (optional)", value=note.label, max_chars=40, key=f"note_edit_label_{note.id}")
                left, right = st.columns([1, 1])
                left.form_submit_button("Save", icon=":material/save:", on_click=_edit_note, args=(note.id,))
                right.form_submit_button("Delete", icon=":material/delete:", on_click=_delete_note, args=(note.id,))
    _history(note)


def _who_writes() -> None:
    """Who notes are written as: the signed-in user, or a typed name (and the warning that nothing is checked)."""
    user = signed_in_user()
    if user is not None:
        st.caption(f"Writing as **{user.name}**: only you can edit or delete your notes; earlier versions are kept.")
    else:
        st.text_input("Your name", value=st.session_state.get(_AUTHOR, ""), max_chars=60, key="note_author")
        st.caption("Notes are unauthenticated on this server: the name is typed, and anyone can edit or delete a "
                   "note (earlier versions are kept).")


def notes_panel(model: str, layer: int, head: int) -> None:
    """The notes on one head, and a form to add one (optional label, text; a typed name without sign-in)."""
    st.subheader(f"Notes on L{layer}H{head}")
    here = [note for note in model_notes(model) if (note.layer, note.head) == (layer, head)]
    for note in here:
        _note_item(note)
    if not here:
        st.caption("No notes yet. Notes are shared with everyone using this server.")
    if _NOTE_ERROR in st.session_state:
        st.error(st.session_state.pop(_NOTE_ERROR))
    if not can_write():
        st.caption("Sign in to write notes.")
        return
    with st.form(f"note_form_{layer}_{head}", clear_on_submit=True, border=False):
        _who_writes()
        st.text_input("Label (optional)", max_chars=40, placeholder="e.g. name mover", key="note_label")
        st.text_area("Note", max_chars=MAX_NOTE_CHARS, placeholder="e.g. copies the name after 'gave'",
                     key="note_text")
        st.form_submit_button("Add note", icon=":material/edit_note:", on_click=_save_note, args=(model, layer, head))


def _store_change(change) -> None:
    """Run a note change, keeping a refusal or a database failure for the panel to show."""
    try:
        change()
    except ShareError as error:
        st.session_state[_NOTE_ERROR] = str(error)
    except DATABASE_ERRORS as error:
        st.session_state[_NOTE_ERROR] = f"Could not save the note ({type(error).__name__}); try again."


def _save_note(model: str, layer: int, head: int) -> None:
    """Form callback: store the note typed in the form (runs before the page, so the list shows it)."""
    if "note_author" in st.session_state:
        st.session_state[_AUTHOR] = st.session_state["note_author"]
    name, identity = _editor()
    _store_change(lambda: share_store().add_note(model, layer, head, st.session_state.get("note_text", ""), name,
                                                 st.session_state.get("note_label", ""), identity))


def _edit_note(note_id: int) -> None:
    name, identity = _editor()
    _store_change(lambda: share_store().edit_note(note_id, st.session_state.get(f"note_edit_text_{note_id}", ""),
                                                  st.session_state.get(f"note_edit_label_{note_id}", ""), name,
                                                  identity))


def _delete_note(note_id: int) -> None:
    name, identity = _editor()
    _store_change(lambda: share_store().delete_note(note_id, name, identity))
