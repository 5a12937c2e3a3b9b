"""Circuits on SmolLM2-135M: EAP and EAP-IG over every edge, exact refinement vs the naive loop, faithfulness.

Run with ``python -m bench.bench_circuits`` (``--pairs 0`` for the one-pair timings only). One run; wall and CPU
seconds of this process are both given, since the machine's other work inflates wall time. The exact refinement
is timed batched (restart at each edge's downstream layer) against one full forward per edge, with the largest
difference between their numbers.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from analysis.datasets.generators import ioi_dataset
from analysis.datasets.probes import patching_pair
from analysis.methods.path_patching import path_patching, receiver_inputs
from analysis.methods.census import text_census
from analysis.methods.circuit_graph import circuit_heads, select
from analysis.methods.edge_attribution import edge_scores, exact_edge_values, prepare_edge_runs
from analysis.methods.faithfulness import curve_auc, faithfulness_curve
from analysis.methods.importance import rank_correlation
from analysis.methods.logit_attribution import decompose
from analysis.methods.patching import PatchingMetric, head_patching
from analysis.runtime.loading import load_model
from analysis.runtime.trace import encode_text
from bench.common import machine, table

SIZES = (50, 100, 200, 500)


def _timed(function):
    """(wall seconds, CPU seconds of this process, value)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def _inputs(handle, clean: str, corrupted: str, target: str, distractor: str):
    ids = [encode_text(handle, text)[0] for text in (clean, corrupted)]
    token = lambda text: handle.tokenizer.encode(text, add_special_tokens=False)[0]  # noqa: E731
    return ids[0], ids[1], PatchingMetric("logit_diff", token(target), token(distractor))


def _top(table_: pd.DataFrame, n: int) -> pd.DataFrame:
    return table_.loc[table_["score"].abs().sort_values(ascending=False, kind="stable").index[:n]]


def one_pair(handle) -> None:
    """Timings on the built-in IOI pair, and its circuit's heads against head patching and DLA."""
    pair = patching_pair("ioi", handle.tokenizer)
    clean, corrupted, metric = _inputs(handle, pair.clean, pair.corrupted, pair.target, pair.distractor)
    prepare = _timed(lambda: prepare_edge_runs(handle, clean, corrupted, metric))
    runs = prepare[2]
    eap = _timed(lambda: edge_scores(handle, runs, "eap"))
    ig = _timed(lambda: edge_scores(handle, runs, "eap-ig", steps=5))
    top = _top(ig[2], 200)
    fast = _timed(lambda: exact_edge_values(handle, runs, top))
    naive = _timed(lambda: exact_edge_values(handle, runs, top, restart=False))
    rows = [["two forwards keeping every node's write", *prepare[:2]], [f"EAP, all {len(eap[2]):,} edges", *eap[:2]],
            ["EAP-IG (5 steps), all edges", *ig[:2]], ["exact, top 200 edges (batched restart)", *fast[:2]],
            ["exact, top 200 edges (one full forward each)", *naive[:2]]]
    print(f"\nOne IOI pair ({clean.shape[1]} tokens), {handle.info.name}: {machine()}")
    print(table(["step", "wall s", "CPU s"], [[name, f"{wall:.1f}", f"{cpu:.1f}"] for name, wall, cpu in rows]))
    print(f"restart vs naive: {naive[0] / fast[0]:.2f}× wall, {naive[1] / fast[1]:.2f}× CPU; largest difference "
          f"{np.abs(fast[2] - naive[2]).max():.2e}")
    exact = fast[2] - runs.baseline.clean
    print(f"rank correlation of |EAP-IG| and |exact| on the top 200: "
          f"{rank_correlation(top['score'].abs().to_numpy(), np.abs(exact)):.2f}")
    circuit = select(runs.graph, ig[2]["score"].to_numpy(), "top_n", 200)
    heads = {f"L{layer}H{head}" for layer, head in circuit_heads(runs.graph, circuit)}
    patched = head_patching(handle, clean, corrupted, metric)
    by_patching = set(patched.reindex(patched["effect"].abs().sort_values(ascending=False).index)["head"].head(10))
    decomposition = decompose(handle, clean)
    direction = (handle.parts.unembedding.weight[runs.metric.target_id] - handle.parts.unembedding.weight[
        runs.metric.distractor_id]).detach().float().numpy()
    dla = decomposition.heads @ direction
    by_dla = {f"L{layer}H{head}" for layer, head in zip(*np.unravel_index(np.argsort(-np.abs(dla), axis=None)[:10],
                                                                           dla.shape))}
    print(f"EAP-IG top-200 circuit: {int(circuit.sum())} edges after pruning, {len(heads)} heads: {sorted(heads)}")
    print(f"  of the 10 heads with the largest exact patching effect, in the circuit: {sorted(by_patching & heads)}")
    print(f"  of the 10 heads with the largest |DLA| of the logit difference, in the circuit: {sorted(by_dla & heads)}")
    movers = ", ".join(f"L{layer}H{head}" for layer, head in zip(*np.unravel_index(np.argsort(-dla, axis=None)[:3],
                                                                                    dla.shape)))
    receivers = receiver_inputs(runs.graph, movers, ("q",))
    paths = _timed(lambda: path_patching(handle, runs, receivers))
    strongest = paths[2].reindex(paths[2]["effect"].abs().sort_values(ascending=False).index).head(6)
    print(f"path patching into the queries of the 3 heads with the largest DLA ({movers}), "
          f"{len(paths[2])} senders: {paths[0]:.1f} s wall, {paths[1]:.1f} s CPU; strongest senders: "
          + ", ".join(f"{row.sender} ({row.effect:+.2f})" for row in strongest.itertuples()))


def induction_k_edges(handle, n_edges: int = 200) -> None:
    """On the induction pair: do EAP-IG's top edges contain previous-token head → induction head key edges?"""
    pair = patching_pair("induction", handle.tokenizer)
    clean, corrupted, metric = _inputs(handle, pair.clean, pair.corrupted, pair.target, pair.distractor)
    runs = prepare_edge_runs(handle, clean, corrupted, metric)
    table = edge_scores(handle, runs, "eap-ig", steps=5)
    census = text_census(handle, pair.clean)
    previous = set(census.nlargest(5, "previous_token")["head"])
    induction = census.nlargest(5, "induction_text")
    kv_of = {row.head: (row.head if runs.graph.group_size == 1 else
                        f"L{row.layer}KV{row.head_index // runs.graph.group_size}") for row in induction.itertuples()}
    ranked = table.reindex(table["score"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)
    k_edges = ranked[(ranked["input"] == "k") & ranked["source"].isin(previous)
                     & ranked["target"].isin(set(kv_of.values()))]
    circuit = select(runs.graph, table["score"].to_numpy(), "top_n", n_edges)
    kept = table[circuit]
    print(f"\nInduction pair ({clean.shape[1]} tokens), {handle.info.name}, EAP-IG (5 steps), {len(table):,} edges:")
    print(f"  previous-token heads (census top 5): {sorted(previous)}; induction heads (top 5): "
          f"{list(induction['head'])} → key inputs {sorted(set(kv_of.values()))}")
    print(f"  previous-token → induction key edges: best rank {int(k_edges.index.min()) + 1 if len(k_edges) else '—'} "
          f"of {len(table):,}; " + ", ".join(f"{row.source}→{row.target}<k> #{index + 1} ({row.score:+.3f})"
                                             for index, row in k_edges.head(5).iterrows()))
    inside = kept[(kept["input"] == "k") & kept["source"].isin(previous) & kept["target"].isin(set(kv_of.values()))]
    print(f"  in the pruned top-{n_edges} circuit ({int(circuit.sum())} edges): {len(inside)} such key edges")


def dataset_faithfulness(handle, n_pairs: int) -> None:
    """Faithfulness of the top 50/100/200/500 edges of EAP and EAP-IG on ``n_pairs`` generated IOI pairs."""
    dataset = ioi_dataset(n_pairs, seed=0)
    curves = []
    for row in dataset.pairs:
        clean, corrupted, metric = _inputs(handle, row.clean, row.corrupted, row.target, row.distractor)
        if clean.shape[1] != corrupted.shape[1]:
            continue
        runs = prepare_edge_runs(handle, clean, corrupted, metric)
        tables = {"EAP": edge_scores(handle, runs, "eap"), "EAP-IG": edge_scores(handle, runs, "eap-ig", steps=5)}
        curves.append(faithfulness_curve(handle, runs, tables, sizes=list(SIZES)))
    frame = pd.concat(curves)
    summary = frame.groupby(["method", "n_edges"])["faithfulness"].agg(["mean", "std"]).reset_index()
    print(f"\nFaithfulness on {len(curves)} IOI pairs (logit difference, patch ablation; mean ± std):")
    rows = []
    for method, group in summary.groupby("method"):
        auc = curve_auc(group["n_edges"].to_numpy(), group["mean"].to_numpy())
        rows.append([method, *[f"{m:.2f} ± {s:.2f}" for m, s in zip(group["mean"], group["std"])], f"{auc:.2f}"])
    print(table(["method", *[f"top {size}" for size in SIZES], "AUC"], rows))


def main() -> None:
    """Run the benchmark and print markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=20, help="IOI pairs for the faithfulness table (0: skip)")
    args = parser.parse_args()
    handle = load_model(args.model)
    one_pair(handle)
    induction_k_edges(handle)
    if args.pairs:
        dataset_faithfulness(handle, args.pairs)


if __name__ == "__main__":
    main()
