"""Statistics over the rows of a dataset sweep: mean, spread and a 95 % confidence interval.

A per-head sweep's rows are a long table, one line per (row, head): "row", "head", "layer", "head_index" and
value columns; ``head_summary`` reduces one value column to one line per head. A per-row sweep (one line per
row, e.g. a knockout's Δ loss) is reduced by ``value_summary``, one line per value column. Both give the mean
over rows and Student's t interval mean ± t(0.975, n − 1) · s / √n (s: the sample standard deviation,
``interval_half``). Rows where the value is undefined (NaN, e.g. an induction score on a text without repeated
tokens) are left out of n. With n < 2 there is no interval (NaN).
"""
from __future__ import annotations

import math
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import pandas as pd

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


SUMMARY_COLUMNS = ("n", "mean", "std", "ci_low", "ci_high", "ci_half")


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


def head_summary(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """One line per head: "n", "mean", "std", "ci_low", "ci_high", "ci_half" of ``value`` over rows."""
    groups = rows.groupby(list(HEAD_COLUMNS), sort=False)[value]
    summary = groups.agg(n="count", mean="mean", std="std").reset_index()
    summary = _with_interval(summary.sort_values(["layer", "head_index"], ignore_index=True))
    return summary[[*HEAD_COLUMNS, *SUMMARY_COLUMNS]]


def value_summary(rows: pd.DataFrame, values: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """One line per value column of a per-row table: "value", then "n", "mean", "std" and the interval."""
    summary = rows[list(values)].agg(["count", "mean", "std"]).T.rename(columns={"count": "n"})
    summary = _with_interval(summary.rename_axis("value").reset_index().astype({"n": int}))
    return summary[["value", *SUMMARY_COLUMNS]]


def head_values(rows: pd.DataFrame, head: str, value: str) -> pd.DataFrame:
    """One head's ``value`` on every row ("row", value), in row order, undefined rows left out."""
    chosen = rows.loc[rows["head"] == head, ["row", value]].dropna()
    return chosen.sort_values("row", ignore_index=True)


def value_grid(summary: pd.DataFrame, column: str, n_layers: int, n_heads: int) -> np.ndarray:
    """A summary column as a [layers, heads] array (NaN where a head has no value)."""
    grid = np.full((n_layers, n_heads), np.nan)
    grid[summary["layer"].to_numpy(), summary["head_index"].to_numpy()] = summary[column].to_numpy()
    return grid
