"""The ablation lab's downloads: what a selection changed, as JSON (everything) and CSV (per-token losses)."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from analysis.methods.ablation import AblationResult
from analysis.methods.ablation_spec import format_ablation


def _plain(value):
    """numpy numbers as Python numbers in JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def token_losses(result: AblationResult) -> pd.DataFrame:
    """One row per predicted token: its position, the token, and its loss before and after."""
    return pd.DataFrame({"position": range(1, len(result.tokens)), "token": result.tokens[1:],
                         "loss_before": result.loss_before, "loss_after": result.loss_after})


def lab_report(model: str, result: AblationResult, continuations: dict[str, str]) -> dict:
    """The selection, its metrics, the predictions before/after, per-token losses, the downstream heads and the
    continuations, as plain JSON-ready data."""
    report = {"model": model, "selection": format_ablation(list(result.interventions)), "metrics": result.metrics,
              "predictions": result.top.drop(columns="token_id", errors="ignore").to_dict("records"),
              "downstream_heads": result.downstream.to_dict("records"), "continuations": continuations}
    if result.loss_before is not None:
        report["token_losses"] = token_losses(result).to_dict("records")
    return report


def lab_downloads(model: str, result: AblationResult, continuations: dict[str, str]) -> None:
    """Download buttons: the whole result as JSON and, for causal models, the per-token losses as CSV."""
    columns = st.columns(2)
    columns[0].download_button("Download this result (JSON)", json.dumps(lab_report(model, result, continuations),
                                                                         indent=1, default=_plain),
                               file_name="ablation_lab.json", mime="application/json", key="lab_json")
    if result.loss_before is not None:
        columns[1].download_button("Per-token losses (CSV)", token_losses(result).to_csv(index=False),
                                   file_name="ablation_lab_token_losses.csv", mime="text/csv", key="lab_csv")
