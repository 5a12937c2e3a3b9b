"""Small helpers shared by the benchmarks: timing and markdown output."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable

import torch


def run_times(function: Callable[[], object], repeats: int = 5) -> list[float]:
    """Wall-clock seconds of ``repeats`` runs of ``function``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def best_of(function: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of ``repeats`` runs, in seconds (the one least disturbed by other work)."""
    return min(run_times(function, repeats))


def machine() -> str:
    """One line naming the machine the numbers come from."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
