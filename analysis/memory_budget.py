"""One memory budget for every process-wide cache, evicting the least recently used entries by size.

Caches bounded by entry count cannot protect a shared server: 64 traces of short texts are nothing, 64 of long
ones exhaust the machine. Every cached result here is measured (``size_of``) and the cache keeps the total
under ``ATLAS_CACHE_MB`` megabytes (default 4,096: room for ~14 traces of 4,096 tokens of SmolLM2 or ~55 of
1,024 tokens next to a few loaded models on a 24 GiB machine shared by a team). An entry larger than the
whole budget is computed and returned but not kept.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

import numpy as np
import pandas as pd
import torch

DEFAULT_CACHE_MB = 4096
T = TypeVar("T")


def budget_bytes() -> int:
    """The budget from ``ATLAS_CACHE_MB`` (megabytes), or the default; at least 1 MB."""
    try:
        megabytes = float(os.environ.get("ATLAS_CACHE_MB", DEFAULT_CACHE_MB))
    except ValueError:
        megabytes = DEFAULT_CACHE_MB
    return int(max(1.0, megabytes) * 2**20)


def size_of(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes held by a result: arrays, tensors and frames by their buffers, containers and dataclasses summed."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if hasattr(value, "nbytes") and not isinstance(value, (np.ndarray, torch.Tensor)):
        return int(value.nbytes)  # objects that know their size (e.g. traces)
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return int(value.memory_usage(deep=True).sum()) if isinstance(value, pd.DataFrame) else int(
            value.memory_usage(deep=True))
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(size_of(k, seen) + size_of(v, seen) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(size_of(item, seen) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(size_of(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return sys.getsizeof(value)


class SizedCache:
    """A thread-safe least-recently-used mapping whose entries' sizes add up to at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        """Bytes held now."""
        return self._total

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for ``key`` (marking it recently used), or ``default``."""
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def put(self, key: Hashable, value: Any, size: int | None = None) -> None:
        """Keep ``value`` unless it alone exceeds the limit, evicting least recently used entries to fit."""
        size = size_of(value) if size is None else size
        with self._lock:
            if key in self._entries:
                self._total -= self._entries.pop(key)[1]
            if size > self.limit:
                return
            while self._entries and self._total + size > self.limit:
                self._total -= self._entries.popitem(last=False)[1][1]
            self._entries[key] = (value, size)
            self._total += size

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._total = 0


_SHARED = SizedCache(budget_bytes())


def shared_cache() -> SizedCache:
    """The process-wide cache every memoised analysis shares."""
    return _SHARED


def memoise(function: Callable[..., T] | None = None, *,
            on_miss: Callable[[Callable[[], T]], T] | None = None) -> Callable[..., T]:
    """Memoise a function of hashable arguments in the shared budget. ``on_miss(compute)`` wraps the work on a
    miss (e.g. a spinner in the UI). The wrapped function gets ``.cache_key(*args, **kwargs)``."""
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        name = f"{fn.__module__}.{fn.__qualname__}"

        def cache_key(*args: Any, **kwargs: Any) -> Hashable:
            return name, args, tuple(sorted(kwargs.items()))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            key = cache_key(*args, **kwargs)
            missing = object()
            value = _SHARED.get(key, missing)
            if value is missing:
                compute = functools.partial(fn, *args, **kwargs)
                value = on_miss(compute) if on_miss is not None else compute()
                _SHARED.put(key, value)
            return value

        wrapper.cache_key = cache_key
        return wrapper

    return decorate(function) if function is not None else decorate
