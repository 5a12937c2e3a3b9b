"""A hub id on a server that cannot reach the hub fails at once with what to do, unless the hub cache holds it."""
from __future__ import annotations

import pytest
from huggingface_hub import constants

from analysis.runtime import hub
from analysis.runtime.loading import load_model
from analysis.runtime.models import ModelLoadError
from tests.browser_support import free_port

NOT_CACHED = "attention-atlas-tests/not-a-cached-model"


@pytest.fixture
def online_setting(monkeypatch):
    """No offline switch and no proxy: the hub is tried directly."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *hub._PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def test_an_offline_server_says_at_once_that_the_hub_cannot_be_reached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_model(NOT_CACHED)
    message = str(error.value)
    assert "offline" in message and "local model folder" in message and f"hf download {NOT_CACHED}" in message


def test_a_hub_host_that_does_not_answer_counts_as_unreachable(online_setting, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert not hub.hub_reachable()
    assert "cannot be reached" in hub.unreachable_hub_message(NOT_CACHED)


def test_a_model_in_the_hub_cache_may_load_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "models--attention-atlas-tests--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub.unreachable_hub_message("attention-atlas-tests/cached") is None
    assert hub.unreachable_hub_message(NOT_CACHED) is not None
