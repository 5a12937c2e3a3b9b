"""The ``circuit`` command of ``python -m analysis``: edge scores, a circuit, its faithfulness, CSV and JSON."""
from __future__ import annotations

import argparse
from pathlib import Path

from analysis.cli.patch import add_pair_arguments, pair_inputs, progress_printer
from analysis.methods.circuit_graph import SELECTIONS, circuit_heads, circuit_json, select
from analysis.methods.edge_attribution import MAX_STEPS, METHODS, edge_scores, prepare_edge_runs, \
    refine
from analysis.methods.faithfulness import ABLATIONS, circuit_values, curve_auc, faithfulness_curve
from analysis.methods.patching_runs import check_patchable
from analysis.runtime.loading import load_model


def add_circuit_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``circuit``."""
    add_pair_arguments(parser)
    parser.add_argument("--method", choices=list(METHODS), default="eap",
                        help="; ".join(f"{name}: {text}" for name, text in METHODS.items()))
    parser.add_argument("--steps", type=int, default=5, help=f"EAP-IG integration steps (1–{MAX_STEPS})")
    parser.add_argument("--top-k", type=int, default=200, help="edges refined by --method exact (by EAP-IG score)")
    parser.add_argument("--select", choices=list(SELECTIONS), default="top_n",
                        help="; ".join(f"{name}: {text}" for name, text in SELECTIONS.items()))
    parser.add_argument("--edges", type=float, default=200,
                        help="edges in the circuit (top_n, greedy) or the |score| threshold (threshold)")
    parser.add_argument("--ablation", choices=list(ABLATIONS), default="patch",
                        help="what edges outside the circuit carry when its faithfulness is measured")
    parser.add_argument("--faithfulness", action="store_true", help="measure the circuit's faithfulness")
    parser.add_argument("--curve", action="store_true",
                        help="faithfulness against circuit size for EAP and EAP-IG, with the AUC")
    parser.add_argument("--top", type=int, default=15, help="edges printed")
    parser.add_argument("--out", help="write every edge's score as CSV")
    parser.add_argument("--json", help="write the graph and the circuit as EAP-IG's JSON (every edge)")


def circuit_command(args: argparse.Namespace) -> int:
    """Score the edges, choose and prune a circuit, print it; optionally its faithfulness, the curve, CSV, JSON."""
    handle = load_model(args.model)
    check_patchable(handle)
    clean_text, corrupted_text, clean, corrupted, metric = pair_inputs(args, handle)
    runs = prepare_edge_runs(handle, clean, corrupted, metric)
    print(f"clean: {clean_text!r}\ncorrupted: {corrupted_text!r}\nmetric {runs.metric.name}: clean "
          f"{runs.baseline.clean:.4f}, corrupted {runs.baseline.corrupted:.4f}; {runs.graph.n_edges:,} edges")
    scored = "eap-ig" if args.method == "exact" else args.method
    table = edge_scores(handle, runs, scored, args.steps)
    if args.method == "exact":
        refined = refine(handle, runs, table, args.top_k, progress_printer("exact edge patching"))
        print(f"exact scores of the top {len(refined)} edges by EAP-IG:")
        print(refined.head(args.top).to_string(index=False, float_format="{:.4f}".format))
    mask = select(runs.graph, table["score"].to_numpy(), args.select, args.edges)
    chosen = table[mask]
    heads = circuit_heads(runs.graph, mask)
    print(f"circuit ({scored}, {args.select} {args.edges:g}): {len(chosen)} edges after pruning, {len(heads)} heads")
    print(chosen.reindex(chosen["score"].abs().sort_values(ascending=False).index).head(args.top).to_string(
        index=False, float_format="{:.4f}".format))
    if args.faithfulness:
        value = circuit_values(handle, runs, table, [mask], args.ablation)[0]
        print(f"faithfulness ({args.ablation}): {value:.4f}  (1 = clean run, 0 = corrupted run)")
    if args.curve:
        tables = {"EAP": table if scored == "eap" else edge_scores(handle, runs, "eap"),
                  "EAP-IG": table if scored == "eap-ig" else edge_scores(handle, runs, "eap-ig", args.steps)}
        curve = faithfulness_curve(handle, runs, tables, ablation=args.ablation)
        print(curve.to_string(index=False, float_format="{:.4f}".format))
        for name, group in curve.groupby("method", sort=False):
            print(f"AUC {name}: {curve_auc(group['n_edges'].to_numpy(), group['faithfulness'].to_numpy()):.3f}")
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} edges to {args.out}")
    if args.json:
        meta = {"model": handle.info.name, "clean": clean_text, "corrupted": corrupted_text,
                "metric": runs.metric.name, "method": scored, "steps": args.steps, "selection": args.select,
                "n_edges": args.edges}
        Path(args.json).write_text(circuit_json(runs.graph, table, mask, meta, all_edges=True))
        print(f"wrote the graph and the circuit to {args.json}")
    return 0
