"""Team notes on heads: the panel in the head view, and the notes other views mark heads with."""
from __future__ import annotations

import streamlit as st

from analysis.share_store import MAX_NOTE_CHARS, HeadNote, ShareError, notes_by_head
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


def _note_line(note: HeadNote) -> str:
    """A note as plain text: notes are shown to everyone on the server, so no Markdown (links, images) renders."""
    label = f" [{note.label}]" if note.label else ""
    return f"{note.author}{label}: {note.text}"


def notes_panel(model: str, layer: int, head: int) -> None:
    """The notes on one head, and a form to add one (display name, optional label, text)."""
    st.subheader(f"Notes on L{layer}H{head}")
    here = [note for note in model_notes(model) if (note.layer, note.head) == (layer, head)]
    if here:
        for note in here:
            st.text(_note_line(note))
    else:
        st.caption("No notes yet. Notes are shared with everyone using this server.")
    with st.form(f"note_form_{layer}_{head}", clear_on_submit=True, border=False):
        left, right = st.columns([1, 1])
        left.text_input("Your name", value=st.session_state.get(_AUTHOR, ""), max_chars=60, key="note_author")
        right.text_input("Label (optional)", max_chars=40, placeholder="e.g. name mover", key="note_label")
        st.text_area("Note", max_chars=MAX_NOTE_CHARS, placeholder="e.g. copies the name after 'gave'",
                     key="note_text")
        st.form_submit_button("Add note", icon=":material/edit_note:", on_click=_save_note, args=(model, layer, head))
    if _NOTE_ERROR in st.session_state:
        st.error(st.session_state.pop(_NOTE_ERROR))


def _save_note(model: str, layer: int, head: int) -> None:
    """Form callback: store the note typed in the form (runs before the page, so the list shows it)."""
    author = st.session_state.get("note_author", "")
    st.session_state[_AUTHOR] = author
    try:
        share_store().add_note(model, layer, head, st.session_state.get("note_text", ""), author,
                               st.session_state.get("note_label", ""))
    except ShareError as error:
        st.session_state[_NOTE_ERROR] = str(error)
    except DATABASE_ERRORS as error:
        st.session_state[_NOTE_ERROR] = f"Could not save the note ({type(error).__name__}); try again."
