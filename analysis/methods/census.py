"""The head census: every head of a model scored and labelled, as one DataFrame row per head.

Scores come from two forwards: the user's text (positional, sink, broad, token-class and — where the
text repeats tokens — induction scores) and the standard induction probe of Olsson et al. (2022):
``probe_length`` distinct random tokens, seeded, written twice. Definitions are in
``analysis.methods.head_scores``. Labels follow from the scores and ``LabelThresholds``; ``label_heads``
relabels without recomputing. A "dormant" head (Guo et al. 2024, "Active-dormant attention heads")
parks nearly all attention on the first token and writes almost nothing: its output norm, relative
to the model's median head, is small.
"""
from __future__ import annotations

import string
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import pandas as pd
import torch

from analysis.runtime.forward import run_patterns, run_with_cache
from analysis.runtime.handle import ModelHandle
from analysis.methods.head_scores import (class_mass, duplicate_token_score, first_token_score, induction_score,
                                  local_mass, mean_distance, normalised_entropy, offset_score)
from analysis.heads import heads_frame
from analysis.datasets.probes import random_token_ids
from analysis.runtime.trace import DEFAULT_MAX_TOKENS, encode_text

PROBE_LENGTH = 32
LOCAL_WINDOW = 2
PUNCTUATION = set(string.punctuation) | {"…", "–", "—", "“", "”", "‘", "’", "«", "»"}

SCORE_HELP: dict[str, str] = {
    "induction": "probe: mass on the token after the earlier copy of the current token (Olsson et al. 2022)",
    "duplicate_token": "probe: mass on the earlier copy of the current token",
    "induction_text": "your text: induction score over tokens that occurred before (NaN if none repeat)",
    "duplicate_text": "your text: duplicate-token score over tokens that occurred before",
    "previous_token": "mass on the previous token, A[i, i−1]",
    "self": "mass on the token itself, A[i, i]",
    "first_token": "mass on the first token, A[i, 0] for i ≥ 1 (attention sink, Xiao et al. 2023)",
    "mean_distance": "mean attention distance in tokens (positional heads, Voita et al. 2019)",
    "local_mass": f"mass within ±{LOCAL_WINDOW} tokens",
    "entropy": "row entropy / log(visible keys): 1 = uniform, broad heads (Clark et al. 2019)",
    "cls_mass": "mass on [CLS] (encoders, Clark et al. 2019)",
    "sep_mass": "mass on [SEP] (encoders, Clark et al. 2019)",
    "punct_mass": "mass on punctuation tokens (Clark et al. 2019)",
    "output_norm": "mean norm of the head's write to the residual stream / the median head of its layer",
}
SCORE_COLUMNS = tuple(SCORE_HELP)


@dataclass(frozen=True)
class LabelThresholds:
    """Score thresholds that turn scores into labels (the first rule that matches wins)."""

    induction: float = 0.3
    duplicate_token: float = 0.3
    previous_token: float = 0.5
    special_token: float = 0.5
    sink: float = 0.5
    dormant_first_token: float = 0.9
    dormant_output_norm: float = 0.5
    positional: float = 0.75
    broad: float = 0.75
    self: float = 0.5


LABELS = ("induction", "duplicate-token", "previous-token", "dormant", "[SEP]", "[CLS]", "punctuation",
          "sink", "positional", "self", "broad", "")


def _probe_ids(handle: ModelHandle, length: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """The induction probe with the tokenizer's own special tokens around it; also the bare ids."""
    tokens = random_token_ids(handle.tokenizer, length, seed)
    repeated = np.concatenate([tokens, tokens]).tolist()
    tokenizer = handle.tokenizer
    specials = tokenizer("", add_special_tokens=True).input_ids  # e.g. [CLS] [SEP] for BERT, nothing for SmolLM2
    starters = {tokenizer.bos_token_id, tokenizer.cls_token_id} - {None}
    prefix = [t for t in specials[:1] if t in starters]
    ids = prefix + repeated + specials[len(prefix):]
    return torch.tensor([ids]), np.asarray(ids)


LayerScores = Callable[[np.ndarray], dict[str, np.ndarray]]  # one layer's patterns [1, heads, q, k] -> [1, heads]


def _run(handle: ModelHandle, ids: torch.Tensor, score: LayerScores) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores [layers, heads] computed layer by layer as the model runs (no layer's quadratic pattern is kept
    after its scores), and output norms [layers, heads] relative to each layer's median head.

    Output norms need each head's write (its slice of the output projection); NaN where that is unknown.
    """
    writes_known = handle.parts.supports_head_writes
    per_layer: dict[int, dict[str, np.ndarray]] = {}

    def score_layer(layer: int, weights: torch.Tensor) -> None:
        per_layer[layer] = score(weights[:1].float().cpu().numpy())

    if handle.parts.supports_interventions:
        result = run_with_cache(handle, ids, sites=("head_output",) if writes_known else (), last_logits=1,
                                on_pattern=score_layer)
    else:
        result = run_patterns(handle, ids)
        for layer in result.layers("pattern"):
            score_layer(layer, result["pattern", layer])
    layers = sorted(per_layer)
    scores = {name: np.concatenate([per_layer[layer][name] for layer in layers]) for name in per_layer[layers[0]]}
    info = handle.info
    if not writes_known:
        return scores, np.full((info.n_layers, info.n_heads), np.nan)
    norms = np.zeros((info.n_layers, info.n_heads))
    with torch.inference_mode():
        for layer in result.layers("head_output"):
            z = result["head_output", layer]
            weight = handle.parts.head_write_weight(layer).view(-1, info.n_heads, info.head_dim)
            writes = torch.einsum("thd,mhd->htm", z[0].float(), weight.float())
            norms[layer] = writes.norm(dim=-1).mean(dim=-1).cpu().numpy()
    return scores, norms / np.median(norms, axis=1, keepdims=True)


def _special_masks(handle: ModelHandle, token_ids: np.ndarray) -> dict[str, np.ndarray]:
    tokenizer = handle.tokenizer
    masks = {}
    for name, token_id in (("cls_mass", tokenizer.cls_token_id), ("sep_mass", tokenizer.sep_token_id)):
        masks[name] = token_ids == token_id if token_id is not None and not handle.info.causal else None
    strings = [tokenizer.decode([int(i)]).strip() for i in token_ids]
    masks["punct_mass"] = np.array([bool(s) and all(c in PUNCTUATION for c in s) for s in strings])
    return masks


def text_scores(patterns: np.ndarray, token_ids: np.ndarray, causal: bool,
                masks: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """All scores defined on an arbitrary text, each [layers, heads]."""
    scores = {
        "induction_text": induction_score(patterns, token_ids),
        "duplicate_text": duplicate_token_score(patterns, token_ids),
        "previous_token": offset_score(patterns, 1),
        "self": offset_score(patterns, 0),
        "first_token": first_token_score(patterns),
        "mean_distance": mean_distance(patterns),
        "local_mass": local_mass(patterns, LOCAL_WINDOW),
        "entropy": normalised_entropy(patterns, causal),
    }
    blank = np.full(patterns.shape[:2], np.nan)
    for name, mask in masks.items():
        scores[name] = blank if mask is None else class_mass(patterns, mask, skip_masked_queries=name == "punct_mass")
    return scores


def head_census(handle: ModelHandle, text: str | None = None, *, probe_length: int = PROBE_LENGTH, seed: int = 0,
                max_tokens: int = DEFAULT_MAX_TOKENS, thresholds: LabelThresholds | None = None) -> pd.DataFrame:
    """One row per head: "head", "layer", "head_index", every score of ``SCORE_COLUMNS`` and "label".

    Without a text, the probe itself stands in for it.
    """
    info = handle.info
    probe, probe_ids = _probe_ids(handle, probe_length, seed)

    def probe_scores(patterns: np.ndarray) -> dict[str, np.ndarray]:
        return {"induction": induction_score(patterns, probe_ids),
                "duplicate_token": duplicate_token_score(patterns, probe_ids)}

    token_ids = probe_ids if text is None else encode_text(handle, text, max_tokens)[0][0].numpy()
    masks = _special_masks(handle, token_ids)

    def text_layer_scores(patterns: np.ndarray) -> dict[str, np.ndarray]:
        return text_scores(patterns, token_ids, info.causal, masks)

    if text is None:
        scores, norms = _run(handle, probe, lambda patterns: {**probe_scores(patterns),
                                                              **text_layer_scores(patterns)})
    else:
        scores, _ = _run(handle, probe, probe_scores)
        text_part, norms = _run(handle, torch.from_numpy(token_ids)[None], text_layer_scores)
        scores.update(text_part)
    scores["output_norm"] = norms
    frame = heads_frame(info.n_layers, info.n_heads, **{name: scores[name] for name in SCORE_COLUMNS})
    return label_heads(frame, thresholds or LabelThresholds())


def text_census(handle: ModelHandle, text: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> pd.DataFrame:
    """The scores defined on ``text`` alone, from one forward (no probe): one row per head, for dataset sweeps."""
    token_ids = encode_text(handle, text, max_tokens)[0][0].numpy()
    masks = _special_masks(handle, token_ids)
    scores, norms = _run(handle, torch.from_numpy(token_ids)[None],
                         lambda patterns: text_scores(patterns, token_ids, handle.info.causal, masks))
    return heads_frame(handle.info.n_layers, handle.info.n_heads, **scores, output_norm=norms)


def _label(row: pd.Series, t: LabelThresholds) -> str:
    def above(column: str, threshold: float) -> bool:
        value = row[column]
        return bool(np.isfinite(value) and value >= threshold)

    dormant = above("first_token", t.dormant_first_token) and bool(row["output_norm"] < t.dormant_output_norm)
    rules = [(above("induction", t.induction), "induction"),
             (above("duplicate_token", t.duplicate_token), "duplicate-token"),
             (above("previous_token", t.previous_token), "previous-token"), (dormant, "dormant"),
             (above("sep_mass", t.special_token), "[SEP]"), (above("cls_mass", t.special_token), "[CLS]"),
             (above("punct_mass", t.special_token), "punctuation"), (above("first_token", t.sink), "sink"),
             (above("local_mass", t.positional), "positional"), (above("self", t.self), "self"),
             (above("entropy", t.broad), "broad")]
    return next((label for matched, label in rules if matched), "")


def label_heads(frame: pd.DataFrame, thresholds: LabelThresholds) -> pd.DataFrame:
    """A copy of the census with its "label" column recomputed for these thresholds."""
    labelled = frame.copy()
    labelled["label"] = [_label(row, thresholds) for _, row in frame.iterrows()]
    return labelled


def threshold_names() -> list[str]:
    """The names of the thresholds, in declaration order."""
    return [f.name for f in fields(LabelThresholds)]


def census_summary(frame: pd.DataFrame, model_name: str) -> str:
    """One paragraph: how many heads of each label (naming the strongest few) and where sink mass sits."""
    parts = []
    for label in LABELS[:-1]:
        chosen = frame[frame["label"] == label]
        if chosen.empty:
            continue
        named = ", ".join(chosen.sort_values(_sort_column(label), ascending=False)["head"].head(6))
        more = ", …" if len(chosen) > 6 else ""
        parts.append(f"{len(chosen)} {label} head{'s' if len(chosen) > 1 else ''} ({named}{more})")
    sentence = f"{model_name}: " + ("; ".join(parts) if parts else "no head passes the thresholds") + "."
    by_layer = frame.groupby("layer")["first_token"].mean()
    half = len(by_layer) // 2
    if half:
        sentence += (f" First-token (sink) mass averages {by_layer.iloc[half:].mean():.0%} in layers ≥ {half} "
                     f"and {by_layer.iloc[:half].mean():.0%} below; the most sink-bound layer is "
                     f"L{int(by_layer.idxmax())} ({by_layer.max():.0%}).")
    return sentence


def _sort_column(label: str) -> str:
    return {"induction": "induction", "duplicate-token": "duplicate_token", "previous-token": "previous_token",
            "[SEP]": "sep_mass", "[CLS]": "cls_mass", "punctuation": "punct_mass", "positional": "local_mass",
            "self": "self", "broad": "entropy"}.get(label, "first_token")


def thresholds_dict(thresholds: LabelThresholds) -> dict[str, float]:
    """The thresholds as a plain dict (for URLs, JSON and the CLI)."""
    return asdict(thresholds)
