"""Fused attention where no pattern is needed, against the eager path every call took before, in one process.

On SmolLM2-135M, interleaved round by round so both paths see the same load:

- the trace's work per layer at 256 / 1,024 / 4,096 tokens: the last ``LAYERS`` layers run from the kept stream,
  keeping each layer's input and every head's 64 × 64 thumbnail. Before: eager attention, each layer's full
  [heads, T, T] pattern pooled (``on_pattern``, which still forces eager). Now: the fused kernel, the
  thumbnails read through it (``pooling.key_bin_readout``). A trace is ``n_layers`` of these plus the
  embedding and the per-token loss, which are the same in both;
- a clean run keeping the stream (no pattern) at 1,024 tokens, eager vs fused: the forward of the lab, importance
  and patching. The eager side forces the weights with a no-op ``on_pattern``.

Run: ``python -m bench.bench_fused`` (a few minutes on a quiet 2-core CPU).
"""
from __future__ import annotations

import time

import torch

from analysis.datasets.probes import repeated_random_text
from analysis.runtime.forward import run_with_cache
from analysis.runtime.loading import load_model
from analysis.runtime.pooling import key_bin_readout, thumbnails, thumbnails_from_readout
from analysis.runtime.trace import THUMBNAIL_CELLS, encode_text
from bench.common import machine, table

LENGTHS = (256, 1024, 4096)
LAYERS = 2  # layers of the trace timed per length (each layer is the same work)
ROUNDS = 2


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def trace_layers(handle, ids: torch.Tensor, fused: bool) -> None:
    """The trace's per-layer work on the last ``LAYERS`` layers, on either path."""
    n_tokens, last = ids.shape[1], handle.info.n_layers
    cells = min(n_tokens, THUMBNAIL_CELLS)
    stream = _stream(handle, ids, last - LAYERS)
    keep = lambda site, layer: site == "resid_pre"  # noqa: E731
    if fused:
        run_with_cache(handle, ids, sites=keep, start_layer=last - LAYERS, start_residual=stream, last_logits=1,
                       key_readout=key_bin_readout(n_tokens, cells),
                       on_key_readout=lambda _layer, read: thumbnails_from_readout(read[0].transpose(0, 1), cells))
    else:
        run_with_cache(handle, ids, sites=keep, start_layer=last - LAYERS, start_residual=stream, last_logits=1,
                       on_pattern=lambda _layer, weights: thumbnails(weights[0], cells))


_STREAMS: dict = {}


def _stream(handle, ids: torch.Tensor, layer: int) -> torch.Tensor:
    key = (ids.shape[1], layer)
    if key not in _STREAMS:
        _STREAMS[key] = run_with_cache(handle, ids, sites=lambda site, at: (site, at) == ("resid_pre", layer),
                                       last_logits=1)["resid_pre", layer]
    return _STREAMS[key]


def clean_run(handle, ids: torch.Tensor, fused: bool) -> None:
    """A forward keeping every layer's input: fused, or eager (weights asked for and dropped)."""
    run_with_cache(handle, ids, sites=("resid_pre",), on_pattern=None if fused else (lambda _layer, _weights: None))


def main() -> None:
    handle = load_model("smollm2-135m")
    texts = {n: encode_text(handle, repeated_random_text(handle.tokenizer, n // 2 + 8, seed=n), n)[0] for n in LENGTHS}
    tasks = {f"trace, {n:,} tokens: {LAYERS} of {handle.info.n_layers} layers": (trace_layers, texts[n])
             for n in LENGTHS}
    tasks["clean run keeping the stream, 1,024 tokens"] = (clean_run, texts[1024])
    best: dict[str, dict[bool, float]] = {name: {} for name in tasks}
    for name, (work, ids) in tasks.items():
        work(handle, ids, True)  # warm-up (and the kept stream)
    for _ in range(ROUNDS):
        for name, (work, ids) in tasks.items():
            for fused in (False, True):
                seconds = _seconds(lambda: work(handle, ids, fused))
                best[name][fused] = min(best[name].get(fused, float("inf")), seconds)
            print(name, best[name], flush=True)
    rows = [[name, f"{times[False]:.2f} s", f"{times[True]:.2f} s", f"{times[False] / times[True]:.1f}×"]
            for name, times in best.items()]
    print(f"\n{machine()}; {time.strftime('%Y-%m-%d')}; best of {ROUNDS} interleaved rounds\n")
    print(table(["task (SmolLM2-135M)", "eager (before)", "fused where no pattern (now)", "speed-up"], rows))


if __name__ == "__main__":
    main()
