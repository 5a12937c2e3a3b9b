"""Shared fixtures: one loaded real model per session, tiny random models for fast shape tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from analysis.runtime.loading import load_model  # noqa: E402
from tests.tiny_models import tiny_bert, tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M, loaded once (from the dequantized cache after the first run)."""
    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    """Gemma-3-270M, loaded once (from the dequantized cache after the first run)."""
    return load_model("gemma3-270m")


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2, loaded once."""
    return load_model("minilm-l6")


@pytest.fixture(scope="session")
def tiny_llama_handle():
    """A 2-layer random LLaMA with GQA (4 query heads, 2 KV heads)."""
    return tiny_llama()


@pytest.fixture(scope="session")
def tiny_bert_handle():
    """A 2-layer random BERT with 4 heads."""
    return tiny_bert()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: thread hand-offs cost more than the work (16 ms per linear on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests write screenshots and other files a person may look at (git-ignored)."""
    path = ROOT / "tests" / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """The real app served on a free localhost port for the whole session (its own share database)."""
    from tests.browser_support import running_app

    database = tmp_path_factory.mktemp("db") / "atlas.sqlite"
    with running_app({"ATLAS_DB_PATH": str(database)}) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    from tests.browser_support import chromium

    with chromium() as instance:
        yield instance


_REAL_MODEL_FIXTURES = {"smollm2", "minilm", "gemma3", "app_url", "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that loads a real model or runs the app as slow, so `-m "not slow"` is the fast tier."""
    for item in items:
        uses_real_model = _REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses_real_model or "AppTest" in vars(item.module):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def job_database(tmp_path, monkeypatch):
    """An empty share-and-jobs database for the test (the app reads ATLAS_DB_PATH when it first opens it)."""
    from components.panels.job_panel import job_runner, job_store
    from components.share_links import share_store

    monkeypatch.setenv("ATLAS_DB_PATH", str(tmp_path / "atlas.sqlite"))
    for cache in (share_store, job_store, job_runner):
        cache.clear()
    yield
    for cache in (share_store, job_store, job_runner):
        cache.clear()
