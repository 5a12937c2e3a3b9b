"""Who may use a team server with sign-in: an allow-list of e-mail domains and addresses.

An entry with an ``@`` names one address (``ana@lab.org``); any other entry names a domain (``lab.org`` or
``@lab.org``), which admits its addresses and those of its subdomains (``cs.lab.org``). Matching ignores case.
An empty list admits everyone the identity provider signs in.
"""
from __future__ import annotations

from typing import Sequence


def email_allowed(email: str, allowed: Sequence[str]) -> bool:
    """True if ``email`` is on the allow-list (or the list is empty)."""
    entries = [entry.strip().lower() for entry in allowed if entry.strip()]
    if not entries:
        return True
    address = email.strip().lower()
    if address.count("@") != 1 or not address.split("@")[0]:
        return False
    domain = address.split("@")[1]
    for entry in entries:
        if entry.startswith("@"):
            entry = entry[1:]
        if "@" in entry:
            if address == entry:
                return True
        elif domain == entry or domain.endswith("." + entry):
            return True
    return False
