"""Token strings that are safe and readable on screen: visible whitespace, escaped HTML."""
from __future__ import annotations

import html

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible_token(text: str) -> str:
    """Show spaces, newlines and tabs as visible marks, for plain-text places (tables, metrics): ' <b>' -> '␣<b>'."""
    return "".join(_VISIBLE.get(ch, ch) for ch in text) if text else "∅"


def display_token(text: str) -> str:
    """``visible_token`` with HTML escaped, for places that render HTML (Plotly labels): ' <b>' -> '␣&lt;b&gt;'."""
    return html.escape(visible_token(text), quote=True)


def token_strings(tokenizer, token_ids) -> list[str]:
    """Decode each id on its own, keeping leading spaces (' Mary')."""
    return [tokenizer.decode([int(i)], clean_up_tokenization_spaces=False) for i in token_ids]
