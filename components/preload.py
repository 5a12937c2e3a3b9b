"""Import every module the pages use, once per process and under one lock, before a session renders.

Streamlit runs each session's script in its own thread, so the first sessions of a fresh server would import
the backend, torch, transformers and SQLAlchemy from several threads at once; Python's per-module import locks
do not make that safe (a deadlock between half-initialised modules, or a partially initialised third-party
package). The first session imports everything here while the others wait.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading

import components

_LOCK = threading.Lock()
_loaded = False


def preload_modules() -> None:
    """Import all ``components`` modules and subpackages (and so the backend and libraries they use) if not done yet."""
    global _loaded
    with _LOCK:
        if _loaded:
            return
        for module in pkgutil.walk_packages(components.__path__, prefix="components."):
            importlib.import_module(module.name)
        _loaded = True
