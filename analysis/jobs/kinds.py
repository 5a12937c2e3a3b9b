"""What a job computes per dataset row: a per-head (or per-edge) table or one line, the same in-process and on a
Dask worker.

Kinds: ``census`` (the census scores defined on a text, ``analysis.methods.census.text_census``),
``gradient`` and ``exact`` importance (``analysis.methods.importance``) for a metric, whose log-prob target is
a pair row's target unless one is given; over (clean, corrupted, target, distractor) rows, ``patching``
(``analysis.methods.patching.head_patching``) and ``circuit`` (every edge of the model's graph scored by EAP or
EAP-IG, ``analysis.methods.edge_attribution``); and ``knockout``: the lab's selection applied to each row
(``analysis.methods.knockout``). A kind's ``table`` says what one row's result is: "heads" (one line per head),
"edges" (one line per edge: its index in the graph's edge order and its score, so SmolLM2's 70,651 edges store
in under 4 bytes each; the names come from the model's graph when read) or "rows" (one line).
``compute_rows`` runs a kind over rows; a row that cannot be computed (an empty text, a span outside it, a
corrupted prompt of another token length) becomes a row error, and the other rows go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.datasets import row_text
from analysis.heads import heads_frame
from analysis.methods.census import text_census
from analysis.methods.edge_attribution import CIRCUIT_TOKENS, SCORE_METHODS, edge_scores, prepare_edge_runs
from analysis.methods.importance import ablation_importance, gradient_importance
from analysis.methods.knockout import KNOCKOUT_VALUES, knockout, knockout_selection
from analysis.methods.metrics import Metric, resolve_target
from analysis.methods.patching import PatchingError, PatchingMetric, head_patching
from analysis.runtime.handle import ModelHandle
from analysis.runtime.trace import encode_text

RowProgress = Callable[[int, int, int], None]  # (row, done steps, total steps); raising from it stops the job
StepProgress = Callable[[int, int], None]


class JobCancelled(Exception):
    """Raised inside a running job when someone asked to cancel it."""


@dataclass(frozen=True)
class JobKind:
    """A per-row computation: its value columns (the first is shown by default) and the row fields it needs."""

    name: str
    title: str
    values: tuple[str, ...]
    compute: Callable[[ModelHandle, dict[str, str], dict[str, Any], int, StepProgress | None], pd.DataFrame]
    needs_pairs: bool = False
    needs_causal: bool = False  # next-token metrics: not for encoders
    uses_metric: bool = False
    step_name: str = ""  # what progress inside one row counts ("layer"), if it reports any
    help: str = ""
    table: str = "heads"  # what one row's result is: "heads" (a line per head), "edges" (per graph edge) or "rows"


def row_metric(handle: ModelHandle, row: dict[str, str], options: dict[str, Any]) -> Metric:
    """The importance metric for a row; a log-prob target comes from the options, else from the row's target."""
    name = options.get("metric", "loss")
    target_id = None
    if name == "logprob":
        target_id, _ = resolve_target(handle.tokenizer, options.get("target") or row.get("target", ""))
    start, end = options.get("span", (0, 0))
    return Metric(name, (int(start), int(end)), target_id)


def _ids(handle: ModelHandle, text: str, max_tokens: int):
    return encode_text(handle, text, max_tokens)[0]


def _census(handle, row, options, max_tokens, progress):
    return text_census(handle, row_text(row), max_tokens)


def _gradient(handle, row, options, max_tokens, progress):
    frame = gradient_importance(handle, _ids(handle, row_text(row), max_tokens), row_metric(handle, row, options),
                                options.get("mode", "zero"))
    return frame[["head", "layer", "head_index", "importance", "estimate", "gradient"]]


def _exact(handle, row, options, max_tokens, progress):
    return ablation_importance(handle, _ids(handle, row_text(row), max_tokens), row_metric(handle, row, options),
                               options.get("mode", "zero"), progress)


def _pair_metric(handle: ModelHandle, row: dict[str, str], options: dict[str, Any]) -> PatchingMetric:
    target, _ = resolve_target(handle.tokenizer, row["target"])
    distractor, _ = resolve_target(handle.tokenizer, row["distractor"])
    return PatchingMetric(options.get("metric", "logit_diff"), target, distractor)


def _patching(handle, row, options, max_tokens, progress):
    return head_patching(handle, _ids(handle, row["clean"], max_tokens), _ids(handle, row["corrupted"], max_tokens),
                         _pair_metric(handle, row, options), options.get("direction", "denoise"), progress)


def _circuit_ids(handle: ModelHandle, text: str, max_tokens: int):
    ids, total = encode_text(handle, text, max_tokens)
    if total > CIRCUIT_TOKENS:
        raise PatchingError(f"The prompt has {total} tokens; circuits work on prompts of up to {CIRCUIT_TOKENS} "
                            "tokens.")
    return ids


def _circuit(handle, row, options, max_tokens, progress):
    method = options.get("method", "eap")
    if method not in SCORE_METHODS:
        raise PatchingError(f"Unknown edge score method '{method}'; use one of {', '.join(SCORE_METHODS)}.")
    runs = prepare_edge_runs(handle, _circuit_ids(handle, row["clean"], max_tokens),
                             _circuit_ids(handle, row["corrupted"], max_tokens), _pair_metric(handle, row, options))
    scores = edge_scores(handle, runs, method, int(options.get("steps", 5)), progress=progress)["score"]
    return pd.DataFrame({"edge": np.arange(len(scores), dtype=np.int32), "score": scores.to_numpy(np.float32)})


def _knockout(handle, row, options, max_tokens, progress):
    info = handle.info
    selection = knockout_selection(options["selection"], info.n_layers, info.n_heads, "corrupted" in row)
    resamples = any(edit.mode == "resample" for edit in selection)
    source = _ids(handle, row["corrupted"], max_tokens) if resamples else None
    target_id, _ = resolve_target(handle.tokenizer, options.get("target") or row.get("target", ""))
    return pd.DataFrame([knockout(handle, _ids(handle, row_text(row), max_tokens), selection, target_id, source)])


CENSUS_VALUES = ("previous_token", "induction_text", "duplicate_text", "first_token", "self", "mean_distance",
                 "local_mass", "entropy", "cls_mass", "sep_mass", "punct_mass", "output_norm")

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (
    JobKind("census", "Head census scores", CENSUS_VALUES, _census,
            help="The census scores defined on a text (previous-token, induction on repeated tokens, sink, "
                 "positional, broad, …), one forward per row."),
    JobKind("gradient", "Importance: gradient", ("importance", "estimate", "gradient"), _gradient, needs_causal=True,
            uses_metric=True,
            help="|∂metric/∂gate| per head (Michel et al. 2019), one forward and one backward per row."),
    JobKind("exact", "Importance: exact ablation", ("delta", "importance"), _exact, needs_causal=True, uses_metric=True,
            step_name="layer",
            help="The metric's change when each head alone is ablated: one restart per layer per row."),
    JobKind("patching", "Activation patching", ("effect", "value"), _patching, needs_pairs=True, needs_causal=True,
            step_name="head",
            help="Each head's output patched alone between the clean and the corrupted prompt (denoise: clean into "
                 "corrupted); effect 0 = the corrupted run, 1 = the clean run."),
    JobKind("knockout", "Lab selection: knockout", tuple(KNOCKOUT_VALUES), _knockout, needs_causal=True, table="rows",
            help="The lab's selection applied to every row at once: the clean and edited loss over the text, the "
                 "log-prob of the target (a pair row's target, else the clean top prediction) and the KL, one line "
                 "per row; resampled heads read each pair row's corrupted prompt."),
    JobKind("circuit", "Circuit edges: EAP / EAP-IG", ("score",), _circuit, needs_pairs=True, needs_causal=True,
            step_name="integration step", table="edges",
            help="Every edge of the model's graph scored per pair (Syed et al. 2023, EAP; Hanna et al. 2024, "
                 "EAP-IG): the estimated change of the raw metric when that edge alone is patched from the "
                 "corrupted prompt. The summary is each edge's mean over the pairs with a 95 % interval."),
)}
EMPTY_TABLES = {"heads": lambda: heads_frame(0, 0),
                "edges": lambda: pd.DataFrame({"edge": np.zeros(0, np.int32), "score": np.zeros(0)}),
                "rows": pd.DataFrame}
TABLE_KEYS = {"heads": ("layer", "head_index"), "edges": ("edge",), "rows": ()}  # a row's result is sorted by these


def available_kinds(has_pairs: bool, causal: bool) -> list[str]:
    """The kinds that can run on a dataset (some need patching pairs) with a model (some need a causal LM)."""
    return [name for name, kind in KINDS.items()
            if (has_pairs or not kind.needs_pairs) and (causal or not kind.needs_causal)]


def compute_rows(handle: ModelHandle, kind: JobKind, rows: list[tuple[int, dict[str, str]]],
                 options: dict[str, Any], max_tokens: int,
                 progress: RowProgress | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The long result table ("row" first, then the kind's columns: per head, per edge or one line) and one error per
    failed row."""
    frames, errors = [], []
    for index, row in rows:
        step = None if progress is None else (lambda done, total, index=index: progress(index, done, total))
        if step is not None:
            step(0, 1)
        try:
            frame = kind.compute(handle, row, options, max_tokens, step if kind.step_name else None)
        except ValueError as error:  # TextError, MetricError, DatasetError: this row only
            errors.append({"row": index, "message": str(error)})
            continue
        frames.append(frame.assign(row=index)[["row", *frame.columns]])
        if step is not None:
            step(1, 1)
    if not frames:
        empty = EMPTY_TABLES[kind.table]()
        return empty.assign(row=np.zeros(0, np.int64))[["row", *empty.columns]], errors
    return pd.concat(frames, ignore_index=True), errors
