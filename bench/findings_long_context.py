"""Findings on long-context heads and on why heads attend, for SmolLM2-135M and Gemma-3-270M.

- Retrieval heads (Wu et al. 2024): the fraction of heads scoring above 0.1 on the needle probe, and how much
  removing the top-5 retrieval heads breaks the needle answer against 5 random heads (several seeds): answer
  log-probability and greedy accuracy over the probe's prompts.
- QK attribution on the induction probe: for the census' top induction head, the share of its logit on the
  induction key (the token after the earlier copy) that comes from the previous-token heads' writes at the key.
- Streaming heads (Xiao et al. 2024, DuoAttention): on a natural text of ``STREAM_TOKENS`` tokens, the heads whose
  restriction alone to 4 sink + 64 recent keys changes the mean loss by less than the threshold, the loss change
  when they are all restricted at once, and the KV cache that saves.
Run: ``python -m bench.findings_long_context smollm2-135m [streaming]`` (tens of minutes on a shared 2-core CPU).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from analysis.datasets.probes import random_token_ids
from analysis.methods.census import PROBE_LENGTH, head_census
from analysis.methods.qk_attribution import component_run, qk_breakdown
from analysis.methods.retrieval import RETRIEVAL_THRESHOLD, haystack_prompts, needle_answer, retrieval_sweep
from analysis.datasets.haystack import NEEDLES
from analysis.runtime.interventions import HeadIntervention
from analysis.runtime.loading import load_model
from analysis.datasets.natural_text import NATURAL_SENTENCES
from analysis.methods.streaming import STREAMING_THRESHOLD, kv_cache_bytes, restrict_heads, streaming_scores
from analysis.runtime.trace import encode_text

LENGTHS, DEPTHS, NEEDLE_COUNT, SEEDS, TOP_K = (256, 512), (0.25, 0.75), 2, (0, 1, 2), 5


def retrieval_findings(handle) -> dict:
    """Retrieval scores, and the needle answer with the top-k retrieval heads or k random heads removed."""
    needles = NEEDLES[:NEEDLE_COUNT]
    sweep = retrieval_sweep(handle, LENGTHS, DEPTHS, needles, n_tokens=6,
                            on_progress=lambda done, total: print(f"  probe {done}/{total}", flush=True))
    scores = sweep.scores.sort_values("retrieval", ascending=False)
    prompts = haystack_prompts(handle.tokenizer, LENGTHS, DEPTHS, needles)

    def answers(heads) -> tuple[float, float]:
        edits = [HeadIntervention(int(layer), int(head)) for layer, head in heads]
        results = [needle_answer(handle, prompt, edits, n_tokens=6) for prompt in prompts]
        return float(np.mean([r[0] for r in results])), float(np.mean([r[1] for r in results]))

    top = list(zip(scores["layer"].head(TOP_K), scores["head_index"].head(TOP_K)))
    clean, removed = answers([]), answers(top)
    random_runs = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        picks = rng.choice(handle.info.n_total_heads, TOP_K, replace=False)
        random_runs.append(answers([divmod(int(p), handle.info.n_heads) for p in picks]))
        print(f"  random seed {seed}: {random_runs[-1]}", flush=True)
    return {
        "fraction_above_0.1": float((sweep.scores["retrieval"] > RETRIEVAL_THRESHOLD).mean()),
        "top_heads": [f"L{layer}H{head}: {score:.2f}" for layer, head, score in
                      zip(scores["layer"].head(8), scores["head_index"].head(8), scores["retrieval"].head(8))],
        "clean_accuracy": clean[1], "clean_answer_logprob": clean[0],
        "top5_removed": {"accuracy": removed[1], "answer_logprob": removed[0]},
        "random5_removed": {"accuracy": [r[1] for r in random_runs], "answer_logprob": [r[0] for r in random_runs]},
        "trials": sweep.trials[["length", "depth", "answer", "correct", "copy_steps"]].to_dict("records"),
    }


def induction_findings(handle, n_queries: int = 8) -> dict:
    """Share of the top induction head's logit on its induction key that the previous-token heads write at the key."""
    census = head_census(handle)
    top = census.sort_values("induction", ascending=False).iloc[0]
    previous = set(census.loc[census["label"] == "previous-token", "head"])
    previous_below = {name for name in previous if int(name[1:].split("H")[0]) < int(top["layer"])}
    tokens = random_token_ids(handle.tokenizer, PROBE_LENGTH, 0)
    specials = handle.tokenizer("", add_special_tokens=True).input_ids[:1]
    ids = torch.tensor([specials + np.concatenate([tokens, tokens]).tolist()])
    offset = len(specials)
    run = component_run(handle, ids, int(top["layer"]))
    shares, logits = [], []
    for query in np.linspace(offset + PROBE_LENGTH + 1, offset + 2 * PROBE_LENGTH - 1, n_queries).astype(int):
        key = int(query) - PROBE_LENGTH + 1
        cell = qk_breakdown(handle, ids, int(top["layer"]), int(top["head_index"]), int(query), key, run=run).cell
        sides = cell.sides()
        from_previous = sides.loc[sides["component"].isin(previous_below), "key_side"].sum()
        shares.append(from_previous / cell.logit)
        logits.append(cell.logit)
    return {"induction_head": top["head"], "induction_score": float(top["induction"]),
            "previous_token_heads_below": sorted(previous_below), "mean_logit": float(np.mean(logits)),
            "previous_token_share_of_logit": float(np.mean(shares)), "share_per_query": [float(s) for s in shares]}


STREAM_TOKENS = 512


def streaming_findings(handle) -> dict:
    """Streaming heads on a natural text: how many, the loss change with all of them restricted, the KV saved."""
    ids = encode_text(handle, " ".join(NATURAL_SENTENCES), STREAM_TOKENS)[0]
    scores = streaming_scores(handle, ids)
    streaming = scores[scores["delta_loss"].abs() < STREAMING_THRESHOLD]
    heads = list(zip(streaming["layer"], streaming["head_index"]))
    total, saved = kv_cache_bytes(handle.info, heads, ids.shape[1])
    return {"tokens": int(ids.shape[1]), "streaming_heads": len(heads), "heads": len(scores),
            "share": round(len(heads) / len(scores), 3),
            "most_needed": [(row.head, round(float(row.delta_loss), 3)) for row in
                            scores.nlargest(5, "delta_loss").itertuples()],
            "all_restricted_delta_loss": round(restrict_heads(handle, ids, heads), 4),
            "kv_saved_share": round(saved / total, 3)}


def main(name: str, only: str = "") -> None:
    torch.set_num_threads(1)
    handle = load_model(name)
    if only == "streaming":
        print(json.dumps({"model": name, "streaming": streaming_findings(handle)}, indent=1), flush=True)
        return
    print(json.dumps({"model": name, "induction": induction_findings(handle)}, indent=1), flush=True)
    print(json.dumps({"model": name, "retrieval": retrieval_findings(handle)}, indent=1), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m", sys.argv[2] if len(sys.argv) > 2 else "")
