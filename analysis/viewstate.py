"""The app's view state as plain data: every field a URL (or a short link) may carry.

Each field is declared once here with its type, default and bounds. ``parse_state`` turns
untrusted query parameters into a clean state plus warnings (never raising); ``encode_state``
writes the non-default fields back. A page-local field (a job id, a sweep's selected row) belongs to the page that
set it and is reset when the session moves to another page. Pages check model-dependent ranges (layer < n_layers) themselves.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from analysis.methods.circuit_graph import PAGE_SELECTIONS
from analysis.methods.path_patching import PATH_INPUTS
from analysis.methods.census import PROBE_LENGTH, SCORE_COLUMNS, LabelThresholds, thresholds_dict
from analysis.methods.edge_attribution import MAX_STEPS, SCORE_METHODS
from analysis.methods.faithfulness import ABLATIONS
from analysis.methods.importance import ABLATION_MODES
from analysis.methods.metrics import METRICS
from analysis.methods.patching_metric import PATCHING_METRICS
from analysis.methods.patching_runs import DIRECTIONS
from analysis.runtime.models import DEFAULT_MODEL
from analysis.datasets.probes import CORRUPTED_IOI_PROMPT, IOI_PROMPT
from analysis.datasets.generators import GENERATORS, MAX_GENERATED_ROWS
from analysis.jobs.kinds import KINDS

CENSUS_VIEWS = (*SCORE_COLUMNS, "label")
MAX_TEXT_CHARS = 40_000  # ~4,096 tokens of English with room to spare
MAX_URL_TEXT_CHARS = 1_500  # longer texts travel only through short links
TEXT_FIELDS = ("text", "compare_text")  # the fields that may hold a long text


@dataclass(frozen=True)
class StateField:
    """One query parameter: its kind ('str', 'int', 'float', 'bool'), default, bounds or choices."""

    name: str
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    max_chars: int = 200
    help: str = ""
    page_local: bool = False  # belongs to the page that set it: reset when the session moves to another page


def _fields(*fields: StateField) -> dict[str, StateField]:
    return {f.name: f for f in fields}


FIELDS: dict[str, StateField] = _fields(
    StateField("model", "str", os.environ.get("ATLAS_DEFAULT_MODEL", DEFAULT_MODEL), help="model name"),
    StateField("text", "str", IOI_PROMPT, max_chars=MAX_TEXT_CHARS, help="the text analysed"),
    StateField("max_tokens", "int", 256, 2, 4096, help="token cap"),
    StateField("layer", "int", 0, 0, 10_000, help="selected layer (zero-based)"),
    StateField("head", "int", 0, 0, 10_000, help="selected head (zero-based)"),
    StateField("token", "int", -1, -1, 100_000, help="selected token position (-1 = last)"),
    StateField("hide_first", "bool", False, help="hide the first token in head views"),
    StateField("log_color", "bool", False, help="logarithmic colour scale"),
    StateField("side_by_side", "bool", False, help="show all heads of the layer"),
    StateField("zoom_query", "int", -1, -1, 100_000,
               help="head view of a long text: first query row of the full-resolution window (-1 = the last rows)"),
    StateField("zoom_key", "int", -1, -1, 100_000,
               help="head view of a long text: first key column of the window (-1 = on the diagonal)"),
    StateField("token_direction", "str", "from", choices=("from", "to"),
               help="token view: where the token looks (from) or who looks at it (to)"),
    StateField("token_per_head", "bool", False, help="token view: one row per head instead of per layer"),
    # head census (issue 4)
    StateField("census_score", "str", "induction", choices=CENSUS_VIEWS, help="census: score (or label map) shown"),
    StateField("census_labels", "str", "", max_chars=400, help="census: labels kept in the table, comma-separated"),
    StateField("probe_len", "int", PROBE_LENGTH, 4, 200, help="census: random tokens per repeat of the probe"),
    StateField("probe_seed", "int", 0, 0, 2**31 - 1, help="census: seed of the probe's random tokens"),
    *(StateField(f"th_{name}", "float", value, 0.0, 1.0, help=f"census: {name} label threshold")
      for name, value in thresholds_dict(LabelThresholds()).items()),
    # head importance and the ablation lab (issue 5)
    StateField("ablate", "str", "", max_chars=4000, help="lab heads, e.g. L12H3:zero:0,L14H1:mean:0.5"),
    StateField("metric", "str", "loss", choices=tuple(METRICS), help="importance metric: loss, logprob or kl"),
    StateField("method", "str", "zero", choices=ABLATION_MODES, help="importance ablation: zero or mean"),
    StateField("target", "str", "", max_chars=100, help="log-prob target token (empty = top prediction)"),
    StateField("span_start", "int", 0, 0, 100_000, help="first predicted position of the loss span"),
    StateField("span_end", "int", 0, 0, 100_000, help="end of the loss span (0 = end of the text)"),
    StateField("gen_tokens", "int", 8, 0, 40, help="lab: greedy tokens generated before/after"),
    # rollout and flow, what a head writes, compare (issue 7)
    StateField("flow_layer", "int", -1, -1, 10_000, help="flow: rollout after this layer (-1 = last)"),
    StateField("flow_token", "int", -1, -1, 100_000, help="flow: output token position (-1 = last)"),
    StateField("flow_heads", "str", "", max_chars=400, help="flow: only these heads, e.g. L12H3, L14H* (empty = all)"),
    StateField("flow_sink", "bool", None,
               help="flow: treat attention to the first token as a no-op (unset: on for causal models)"),
    StateField("flow_threshold", "float", 0.02, 0.001, 1.0, help="flow: smallest edge weight drawn"),
    StateField("flow_all_edges", "bool", False, help="flow: draw all attention edges, not only the output token's flow"),
    StateField("dla_target", "str", "", max_chars=100, help="writes: target token of the DLA grid (empty = top prediction)"),
    StateField("dla_token", "int", -1, -1, 100_000, help="writes: position whose head writes are read (-1 = last)"),
    StateField("compare_text", "str", CORRUPTED_IOI_PROMPT, max_chars=MAX_TEXT_CHARS,
               help="compare: the second text"),
    StateField("compare_model", "str", "", max_chars=200, help="compare: a second model on the same text (empty = second text)"),
    # activation patching (clean prompt = text, corrupted prompt = compare_text)
    StateField("patch_metric", "str", "logit_diff", choices=tuple(PATCHING_METRICS), help="patching: metric"),
    StateField("patch_direction", "str", "denoise", choices=tuple(DIRECTIONS), help="patching: denoise or noise"),
    StateField("patch_target", "str", "", max_chars=100, help="patching: target token (empty = clean top prediction)"),
    StateField("patch_distractor", "str", "", max_chars=100,
               help="patching: distractor token (empty = corrupted top prediction)"),
    StateField("patch_heads", "str", "", max_chars=400, help="patching: heads patched position by position"),
    StateField("patch_residual", "bool", False, help="patching: compute the residual-stream grid"),
    # why a head attends (QK attribution) and long contexts
    StateField("qk_query", "int", -1, -1, 100_000, help="head view: query position of the explained cell (-1 = none)"),
    StateField("qk_key", "int", -1, -1, 100_000, help="head view: key position of the explained cell"),
    StateField("lab_lookback", "bool", False, help="lab: lookback ratio of every head during the generation"),
    StateField("lc_lengths", "str", "256,512", max_chars=60, help="long contexts: haystack lengths in tokens"),
    StateField("lc_needles", "int", 1, 1, 5, help="long contexts: how many of the built-in needles"),
    StateField("lc_retrieval", "bool", False, help="long contexts: run the needle probe"),
    StateField("lc_sink", "int", 4, 0, 4096, help="long contexts: sink tokens a streaming head keeps"),
    StateField("lc_window", "int", 64, 0, 4096, help="long contexts: recent tokens a streaming head keeps"),
    StateField("lc_threshold", "float", 0.01, 0.0, 10.0, help="long contexts: |Δ loss| below which a head streams"),
    StateField("lc_streaming", "bool", False, help="long contexts: run the streaming scores"),
    # circuits (clean prompt = text, corrupted prompt = compare_text, metric and tokens as for patching)
    StateField("circuit_method", "str", "eap", choices=tuple(SCORE_METHODS), help="circuits: edge scores, eap or eap-ig"),
    StateField("circuit_steps", "int", 5, 1, MAX_STEPS, help="circuits: integration steps of EAP-IG"),
    StateField("circuit_ablation", "str", "patch", choices=tuple(ABLATIONS),
               help="circuits: what an edge outside the circuit carries (patch: the corrupted run's write; mean)"),
    StateField("circuit_edges", "int", 100, 1, 20_000, help="circuits: edges in the circuit (before pruning)"),
    StateField("circuit_select", "str", "top_n", choices=tuple(PAGE_SELECTIONS),
               help="circuits: top n edges by |score|, or greedy from the logits up"),
    StateField("circuit_scores", "str", "pair", choices=("pair", "dataset"),
               help="circuits: the circuit is chosen from the pair's own edge scores, or from the mean scores over "
                    "a dataset (the link's circuit job)"),
    StateField("path_receivers", "str", "", max_chars=400,
               help="circuits: path patching receivers, e.g. L23H3, L20H0, MLP29, logits (empty = none)"),
    StateField("path_inputs", "str", "q", choices=tuple(PATH_INPUTS),
               help="circuits: which inputs of the receiver heads the sender reaches (q, k, v or several)"),
    # what a head computes, read from its weights
    StateField("comp_kind", "str", "K", choices=("Q", "K", "V"), help="composition: Q-, K- or V-composition shown"),
    StateField("comp_top", "int", 20, 5, 200, help="composition: strongest pairs of the model shown"),
    StateField("ov_token", "str", "", max_chars=100, help="head page: token whose OV write is shown"),
    StateField("qk_token", "str", "", max_chars=100, help="head page: query token whose QK keys are shown"),
    # datasets and background jobs
    StateField("job", "str", "", max_chars=16, help="a background job whose result is shown (its id)",
               page_local=True),
    StateField("ds_source", "str", "ioi", choices=(*GENERATORS, "upload"), help="datasets: where the rows come from"),
    StateField("ds_n", "int", 20, 1, MAX_GENERATED_ROWS, help="datasets: rows to generate"),
    StateField("ds_seed", "int", 0, 0, 2**31 - 1, help="datasets: seed of the generator (first seed for probes)"),
    StateField("ds_length", "int", 25, 2, 200, help="datasets: random tokens per repeat of a probe"),
    StateField("sweep", "str", "census", choices=tuple(KINDS), help="datasets: what a sweep computes per row"),
    StateField("sweep_value", "str", "", max_chars=40,
               help="datasets and the lab's sweep: the value shown (empty = the kind's first)"),
    StateField("sweep_row", "int", -1, -1, 100_000, help="datasets and the lab's sweep: the selected row (-1 = none)",
               page_local=True),
)


PAGE_LOCAL_FIELDS = tuple(name for name, spec in FIELDS.items() if spec.page_local)


def _parse_value(spec: StateField, raw: str) -> Any:
    if spec.kind == "str":
        if len(raw) > spec.max_chars:
            raise ValueError(f"longer than {spec.max_chars} characters")
        if spec.choices is not None and raw not in spec.choices:
            raise ValueError(f"not one of {', '.join(spec.choices)}")
        return raw
    if spec.kind == "bool":
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError("not true/false")
    if len(raw) > 24:
        raise ValueError("not a number")
    try:
        value: float = int(raw) if spec.kind == "int" else float(raw)
    except ValueError:
        raise ValueError("not a whole number" if spec.kind == "int" else "not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("not a finite number")
    if spec.minimum is not None and value < spec.minimum or spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"outside {spec.minimum}–{spec.maximum}")
    return value


def default_state() -> dict[str, Any]:
    """Every field at its default."""
    return {name: spec.default for name, spec in FIELDS.items()}


def parse_state(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate untrusted parameters into a full state; bad values fall back to defaults with a warning."""
    state = default_state()
    warnings: list[str] = []
    for name, raw in params.items():
        spec = FIELDS.get(name)
        if spec is None:
            continue
        if isinstance(raw, (list, tuple)):
            raw = raw[-1] if raw else ""
        try:
            state[name] = _parse_value(spec, str(raw))
        except (ValueError, TypeError) as error:
            warnings.append(f"Ignored the link's '{name}' ({error}); using the default.")
    return state, warnings


def _encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_state(state: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters for a state: only fields that differ from their defaults."""
    return {
        name: _encode_value(state[name])
        for name, spec in FIELDS.items()
        if name in state and state[name] != spec.default
    }


def too_long_for_url(params: Mapping[str, str]) -> bool:
    """True if a text field of these query parameters is too long for a plain URL (it needs a short link)."""
    return any(len(params.get(name, "")) > MAX_URL_TEXT_CHARS for name in TEXT_FIELDS)
