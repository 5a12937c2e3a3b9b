"""Where a rerun of the ablation lab spends its time after a slider move, stage by stage (AppTest, SmolLM2).

The real page runs in Streamlit's test runner; the functions a rerun calls are wrapped with timers, so each
stage's share of the rerun is measured inside the same run (what is left is Streamlit itself: widgets, the
sidebar, serialising figures). Run with ``python -m bench.bench_lab_rerun`` (``--tokens 64 --gen 8``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from analysis.datasets.probes import EXAMPLE_TEXTS
from bench.common import machine, table

TEXT = EXAMPLE_TEXTS["Paragraph"] + "\n\n" + EXAMPLE_TEXTS["Code snippet"] + "\n" + EXAMPLE_TEXTS["IOI sentence"]
APP = str(Path(__file__).resolve().parent.parent / "app.py")
STAGES = {  # (module, function) -> stage; pages import these names on every run, so wrapping the module works
    ("components.page", "page_context"): "page set-up: state, model, trace",
    ("components.widgets.lab_selection", "selection_grid"): "selection grid figure",
    ("components.widgets.lab_presets", "presets"): "presets",
    ("components.widgets.metrics", "metric_options"): "metric options",
    ("components.caches.ablation", "cached_ablation"): "ablation (backend, cached by selection)",
    ("components.figures.ablation", "paired_bars"): "figures: bars, loss, downstream",
    ("components.figures.ablation", "loss_curve"): "figures: bars, loss, downstream",
    ("components.figures.ablation", "downstream_figure"): "figures: bars, loss, downstream",
    ("components.caches.ablation", "streamed_generation"): "generation (clean and edited, streamed)",
}


SHOWN = "predictions shown (the bars drawn), from the start of the rerun"


def _wrap(seconds: dict[str, float]) -> None:
    """Replace each staged function by one that adds its wall time to ``seconds[stage]``; the end of the bars'
    figure goes in ``seconds[SHOWN]`` as a time (``perf_counter``)."""
    for (module_name, name), stage in STAGES.items():
        module = importlib.import_module(module_name)
        function = getattr(module, name)

        def timed(*args, _function: Callable = function, _stage: str = stage, **kwargs):
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                seconds[_stage] += time.perf_counter() - start
                if _function.__name__ == "paired_bars":
                    seconds[SHOWN] = time.perf_counter()

        setattr(module, name, timed)


def measure(tokens: int, gen_tokens: int, moves: tuple[float, ...]) -> tuple[list[float], dict[str, list[float]]]:
    """Total rerun seconds per slider move and, per stage, its seconds in each move."""
    from streamlit.testing.v1 import AppTest

    seconds: dict[str, float] = defaultdict(float)
    _wrap(seconds)
    app = AppTest.from_file(APP, default_timeout=600)
    app.query_params.update(text=TEXT, max_tokens=str(tokens), ablate="L15H4:zero:0", gen_tokens=str(gen_tokens))
    app.switch_page("pages/ablation_lab.py")
    app.run()
    assert not app.exception, app.exception
    totals, stages = [], defaultdict(list)
    for value in moves:
        seconds.clear()
        start = time.perf_counter()
        app.slider(key="w_lab_scale_L15H4").set_value(value).run()
        totals.append(time.perf_counter() - start)
        assert not app.exception, app.exception
        for stage in dict.fromkeys(STAGES.values()):
            stages[stage].append(seconds[stage])
        stages[SHOWN].append(seconds[SHOWN] - start)
    return totals, stages


def main() -> None:
    """Print the per-stage medians of a few slider moves as a markdown table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--gen", type=int, default=8)
    arguments = parser.parse_args()
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.1f}\n")
    totals, stages = measure(arguments.tokens, arguments.gen, (0.5, 0.25, 1.5, 0.75, 0.1))
    total = statistics.median(totals)
    shown = stages.pop(SHOWN)
    rows = [[stage, f"{statistics.median(values):.3f} s", f"{statistics.median(values) / total:.0%}"]
            for stage, values in stages.items()]
    rest = total - sum(statistics.median(values) for values in stages.values())
    rows += [["rest: Streamlit (widgets, sidebar, sending figures)", f"{rest:.3f} s", f"{rest / total:.0%}"],
             ["whole rerun after a slider move", f"{total:.3f} s", "100%"],
             [SHOWN, f"{statistics.median(shown):.3f} s", f"{statistics.median(shown) / total:.0%}"]]
    print(table([f"lab rerun, SmolLM2, {arguments.tokens} tokens, {arguments.gen} generated", "median", "share"],
                rows))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
