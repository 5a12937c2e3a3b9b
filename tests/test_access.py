"""The allow-list of a team server with sign-in: domains, subdomains and single addresses."""
from __future__ import annotations

import pytest

from analysis.access import email_allowed


@pytest.mark.parametrize("email, allowed, expected", [
    ("ana@lab.org", [], True),
    ("ana@lab.org", ["lab.org"], True),
    ("Ana@LAB.org", ["@lab.org"], True),
    ("ana@cs.lab.org", ["lab.org"], True),
    ("ana@evil-lab.org", ["lab.org"], False),
    ("ana@lab.org.evil.com", ["lab.org"], False),
    ("guest@example.com", ["lab.org", "guest@example.com"], True),
    ("other@example.com", ["lab.org", "guest@example.com"], False),
    ("", ["lab.org"], False),
    ("@lab.org", ["lab.org"], False),
    ("a@b@lab.org", ["lab.org"], False),
])
def test_email_allowed(email, allowed, expected):
    assert email_allowed(email, allowed) is expected
