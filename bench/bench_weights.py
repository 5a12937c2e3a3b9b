"""Weight-based head scores: every copying, MAPS and successor score, and the full Q/K/V composition tables.

Each step is timed from scratch (nothing memoised) and set against one trace of the IOI prompt.
Run with ``python -m bench.bench_weights``.
"""
from __future__ import annotations

from analysis.datasets.probes import IOI_PROMPT
from analysis.methods.composition import KINDS, composition_table
from analysis.methods.ov_circuits import Circuits
from analysis.runtime.loading import load_model
from analysis.runtime.trace import run_trace
from analysis.runtime.weights import read_head_weights
from bench.common import best_of, machine, table


def _scores(handle) -> None:
    circuits = Circuits(handle)
    circuits.copying_scores()
    circuits.maps_copying()
    circuits.successor_scores()


def main() -> None:
    """Print the time of each step, and as a multiple of one trace."""
    rows = []
    print(f"Machine: {machine()}\n", flush=True)
    for name in ("smollm2-135m", "gemma3-270m"):
        handle = load_model(name)
        trace = best_of(lambda: run_trace(handle, IOI_PROMPT), repeats=3)
        weights = read_head_weights(handle)
        steps = [("read every head's weights", lambda: read_head_weights(handle)),
                 ("copying + MAPS + successor, all heads", lambda: _scores(handle))]
        steps += [(f"{kind}-composition, all pairs", lambda kind=kind: composition_table(weights, kind)) for kind in KINDS]
        for label, step in steps:
            seconds = best_of(step, repeats=1)
            rows.append([name, label, f"{seconds:.2f} s", f"{seconds / trace:.0f}×"])
            print(rows[-1], flush=True)
    print(table(["model", "step", "time", "/ one IOI trace"], rows))


if __name__ == "__main__":
    main()
