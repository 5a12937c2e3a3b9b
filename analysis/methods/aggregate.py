"""Statistics over the rows of a dataset sweep: mean, spread and a 95 % confidence interval.

A per-head sweep's rows are a long table, one line per (row, head): "row", "head", "layer", "head_index" and
value columns; ``head_summary`` reduces one value column to one line per head. ``edge_summary`` does the same
per edge for the edge scores of a circuit sweep (one line per (row, edge): "row", "edge", "score"), and
``value_summary`` per value column for a sweep with one line per row (e.g. a knockout's Δ loss). All give the
mean over rows and Student's t interval mean ± t(0.975, n − 1) · s / √n (s: the sample standard deviation,
``interval_half``). Rows where the value is undefined (NaN, e.g. an induction score on a text without repeated
tokens) are left out of n. With n < 2 there is no interval (NaN).
"""
from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import pandas as pd

from analysis.methods.circuit_graph import CircuitGraph

CONFIDENCE = 0.95
HEAD_COLUMNS = ("head", "layer", "head_index")


def _t_cdf(t: float, df: int) -> float:
    """Student's t distribution function at t ≥ 0, by Simpson's rule on its density from 0 to t."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    grid = np.linspace(0.0, t, 2001)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid ** 2 / df))
    step = grid[1] - grid[0]
    integral = step / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    return 0.5 + float(integral)


@lru_cache(maxsize=4096)
def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    if df > 1000:  # within 0.2 % of the normal quantile from here on
        return NormalDist().inv_cdf(probability)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < probability:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


STATISTICS = ("n", "mean", "std", "ci_low", "ci_high", "ci_half")


def interval_half(std: pd.Series, n: pd.Series) -> pd.Series:
    """The half-width t(0.975, n − 1) · s / √n of the 95 % interval of each line's mean (NaN where n < 2)."""
    quantiles = {count: t_quantile((1 + CONFIDENCE) / 2, int(count) - 1) for count in n.unique() if count >= 2}
    factor = n.map(lambda count: quantiles.get(count, np.nan)).astype(float)
    return factor * std / np.sqrt(n.clip(lower=1))


def _with_interval(summary: pd.DataFrame) -> pd.DataFrame:
    """A table with "n", "mean" and "std" columns, with the interval columns added."""
    summary["ci_half"] = interval_half(summary["std"], summary["n"])
    summary["ci_low"] = summary["mean"] - summary["ci_half"]
    summary["ci_high"] = summary["mean"] + summary["ci_half"]
    return summary


def _summary(rows: pd.DataFrame, keys: list[str], order: list[str], value: str) -> pd.DataFrame:
    """One line per ``keys`` group, sorted by ``order``: the keys and STATISTICS of ``value`` over rows."""
    groups = rows.groupby(keys, sort=False)[value]
    summary = groups.agg(n="count", mean="mean", std="std").reset_index()
    summary = _with_interval(summary.sort_values(order, ignore_index=True))
    return summary[[*keys, *STATISTICS]]


def head_summary(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """One line per head: "n", "mean", "std", "ci_low", "ci_high", "ci_half" of ``value`` over rows."""
    return _summary(rows, list(HEAD_COLUMNS), ["layer", "head_index"], value)


def edge_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per edge of a circuit job's rows ("row", "edge", "score"), in edge order: "edge" and the
    "n", "mean", "std", "ci_low", "ci_high", "ci_half" of its score over rows."""
    return _summary(rows, ["edge"], ["edge"], "score")


def value_summary(rows: pd.DataFrame, values: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """One line per value column of a per-row table: "value", then "n", "mean", "std" and the interval."""
    summary = rows[list(values)].agg(["count", "mean", "std"]).T.rename(columns={"count": "n"})
    summary = _with_interval(summary.rename_axis("value").reset_index().astype({"n": int}))
    return summary[["value", *STATISTICS]]


def head_values(rows: pd.DataFrame, head: str, value: str) -> pd.DataFrame:
    """One head's ``value`` on every row ("row", value), in row order, undefined rows left out."""
    chosen = rows.loc[rows["head"] == head, ["row", value]].dropna()
    return chosen.sort_values("row", ignore_index=True)


def value_grid(summary: pd.DataFrame, column: str, n_layers: int, n_heads: int) -> np.ndarray:
    """A summary column as a [layers, heads] array (NaN where a head has no value)."""
    grid = np.full((n_layers, n_heads), np.nan)
    grid[summary["layer"].to_numpy(), summary["head_index"].to_numpy()] = summary[column].to_numpy()
    return grid


def named_edge_summary(graph: CircuitGraph, rows: pd.DataFrame) -> pd.DataFrame:
    """``edge_summary`` in the graph's edge order with each edge's source, target and input from the model's graph,
    the mean as "score" (what circuit selection, faithfulness and the downloads read), then "ci_half", "ci_low",
    "ci_high", "std" and "n" (0 for an edge no row scored)."""
    summary = edge_summary(rows)
    if len(summary) and not 0 <= summary["edge"].min() <= summary["edge"].max() < graph.n_edges:
        raise ValueError(f"These edge scores are not of this model's graph ({graph.n_edges:,} edges).")
    stats = summary.set_index("edge").reindex(range(graph.n_edges))
    return graph.edge_names().assign(score=stats["mean"].to_numpy(), ci_half=stats["ci_half"].to_numpy(),
                                     ci_low=stats["ci_low"].to_numpy(), ci_high=stats["ci_high"].to_numpy(),
                                     std=stats["std"].to_numpy(), n=stats["n"].fillna(0).astype(int).to_numpy())
