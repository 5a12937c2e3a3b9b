"""Whether a hub id can load here, decided before a download starts: from the local hub cache, or a hub that
answers a short connection attempt.

Without this an offline server spends tens of seconds in the hub client's retries before it fails.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache

CONNECT_TIMEOUT = 2.0  # seconds: the hub host answers in well under that when it is reachable
_TRUE = {"1", "true", "yes", "on"}
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_offline_setting() -> bool:
    """True if the server was told to stay offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = CONNECT_TIMEOUT) -> bool:
    """True unless offline is set or the hub's host refuses or ignores a TCP connection within ``timeout``.

    Behind an HTTPS proxy the hub is not tried directly (the proxy decides), so it counts as reachable."""
    if hub_offline_setting():
        return False
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def in_hub_cache(repo_id: str) -> bool:
    """True if the local hub cache holds the model's config (it may then load without the network)."""
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def unreachable_hub_message(repo_id: str) -> str | None:
    """Why ``repo_id`` cannot load here (the hub is out of reach and the model is not cached), or None."""
    if in_hub_cache(repo_id) or hub_reachable():
        return None
    reason = "this server is set to work offline (HF_HUB_OFFLINE)" if hub_offline_setting() else \
        "the Hugging Face hub cannot be reached from this server"
    return (f"Cannot load '{repo_id}': {reason}, and the model is not in the local hub cache. Name a local model "
            "folder instead (one with config.json, or a .gguf file), pick an embedded model, or ask the operator "
            f"to download it into the hub cache ({constants.HF_HUB_CACHE}), e.g. with `hf download {repo_id}` "
            "on a machine with network access.")
