"""One memory budget for every process-wide cache: eviction by size, and a real process driven with long texts."""
from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest

from analysis.memory_budget import SizedCache, budget_bytes, memoise, shared_cache, size_of
from analysis.datasets.probes import repeated_random_text

MB = 2**20


def test_entries_are_evicted_least_recently_used_by_size():
    cache = SizedCache(limit=10 * MB)
    for name in "abc":
        cache.put(name, np.zeros(3 * MB, dtype=np.uint8))
    cache.get("a")  # now the most recently used
    cache.put("d", np.zeros(3 * MB, dtype=np.uint8))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.total_bytes == 9 * MB
    cache.put("huge", np.zeros(11 * MB, dtype=np.uint8))  # larger than the budget: returned, never kept
    assert "huge" not in cache and cache.total_bytes == 9 * MB


def test_sizes_count_buffers_inside_containers_and_dataclasses(tiny_llama_handle):
    from analysis.runtime.trace import run_trace
    trace = run_trace(tiny_llama_handle, "abcdefgh" * 8)
    assert size_of(trace) == trace.nbytes >= trace.residuals.numel() * 4
    assert size_of({"x": (np.zeros(1000), [np.zeros(500)])}) >= 12_000


def test_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATLAS_CACHE_MB", "123")
    assert budget_bytes() == 123 * MB
    monkeypatch.setenv("ATLAS_CACHE_MB", "lots")
    assert budget_bytes() == 4096 * MB


def test_memoised_results_live_in_the_shared_cache():
    calls = []

    @memoise
    def square(x: int) -> np.ndarray:
        calls.append(x)
        return np.full(10, x * x)

    assert square(3)[0] == 9 and square(3)[0] == 9 and calls == [3]
    assert square.cache_key(3) in shared_cache()


@pytest.fixture
def small_budget():
    cache = shared_cache()
    limit = cache.limit
    cache.clear()
    cache.limit = 200 * MB
    yield cache
    cache.clear()
    cache.limit = limit


def test_ten_long_texts_keep_the_process_under_the_budget(smollm2, small_budget):
    """10 different 1,024-token texts through the app's own caches (trace, head pattern, token view): the
    server's memory stays within the model, the budget and a margin for one request's transient arrays. The
    previous design kept 1.08 GB of patterns per such text and would need over 10 GB here."""
    from components.caches import models as app_cache

    process = psutil.Process()
    app_cache.cached_trace("smollm2-135m", "warm up", 1024)  # the model loaded, allocator warmed
    gc.collect()
    baseline = process.memory_info().rss
    peaks = []
    for seed in range(10):
        text = repeated_random_text(smollm2.tokenizer, 512, seed)
        trace = app_cache.cached_trace("smollm2-135m", text, 1024)
        assert trace.n_tokens == 1024
        app_cache.cached_pattern("smollm2-135m", text, 1024, 20, seed % 9)
        app_cache.cached_token_attention("smollm2-135m", text, 1024, 700, "from")
        assert small_budget.total_bytes <= small_budget.limit
        if seed == 0:
            one_text = small_budget.total_bytes
        gc.collect()
        peaks.append(process.memory_info().rss - baseline)
    assert 10 * one_text > small_budget.limit  # the texts did not all fit: the budget evicted
    assert len(small_budget) >= 3  # recent results stay cached
    growth = max(peaks)
    assert growth < small_budget.limit + 600 * MB, f"RSS grew by {growth / MB:.0f} MB"
