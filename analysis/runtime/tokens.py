"""Token strings that are safe and readable on screen: visible whitespace, escaped HTML."""
from __future__ import annotations

import html

_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def display_token(text: str) -> str:
    """Show spaces, newlines and tabs as visible marks and escape HTML (e.g. ' <b>' -> '␣&lt;b&gt;')."""
    if text == "":
        return "∅"
    return html.escape("".join(_VISIBLE.get(ch, ch) for ch in text), quote=True)


def token_strings(tokenizer, token_ids) -> list[str]:
    """Decode each id on its own, keeping leading spaces (' Mary')."""
    return [tokenizer.decode([int(i)], clean_up_tokenization_spaces=False) for i in token_ids]
