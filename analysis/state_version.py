"""The version of the URL view state, and the field renames that bring an older stored state up to it.

Stored views (short links) keep the version they were written with, so a link made before a field was
renamed still opens: ``migrate_state`` applies the renames in order. ``analysis.viewstate`` declares the
fields themselves; this module sits below the share store, which needs only the version.
"""
from __future__ import annotations

from typing import Any, Mapping

STATE_VERSION = 1

# Field renames between state versions: MIGRATIONS[v] turns a version-v state into version v + 1.
# None yet (STATE_VERSION is 1); when a field is renamed, bump STATE_VERSION and add the rename here.
MIGRATIONS: dict[int, dict[str, str]] = {}


def migrate_state(state: Mapping[str, Any], version: int) -> dict[str, Any]:
    """Bring a stored state from ``version`` up to ``STATE_VERSION`` by renaming fields."""
    migrated = dict(state)
    for step in range(version, STATE_VERSION):
        for old, new in MIGRATIONS.get(step, {}).items():
            if old in migrated:
                migrated.setdefault(new, migrated.pop(old))
    return migrated
