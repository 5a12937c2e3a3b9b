"""Short summaries of the loaded model and of the analysed text."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.runtime.handle import ModelInfo
from analysis.runtime.tokens import visible_token
from analysis.runtime.trace import Trace


def model_summary(info: ModelInfo) -> None:
    """Architecture, size and device in a row of metrics (wrapping onto a second line on a narrow page)."""
    row = st.container(horizontal=True, gap="large")
    row.metric("Architecture", info.architecture.replace("ForCausalLM", "").replace("Model", "") or "?",
               help=f"{info.architecture}, {'causal decoder' if info.causal else 'bidirectional encoder'}",
               width="content")
    row.metric("Layers", info.n_layers, width="content")
    row.metric("Heads / layer", info.n_heads, width="content")
    row.metric("KV heads", info.n_kv_heads, width="content",
               help="Fewer KV heads than query heads means grouped-query attention: each query head still "
                    "has its own pattern.")
    row.metric("Parameters", f"{info.n_params / 1e6:.0f} M", width="content")
    row.metric("Device", info.device, width="content")
    abilities = [("head edits", info.supports_interventions), ("layer restart", info.supports_restart),
                 ("head writes read as logits", info.causal and info.supports_head_writes and info.supports_restart)]
    st.caption("Runs on its own transformers code (" + info.family + "): " + ", ".join(
        f"{name} {'✓' if able else '✗'}" for name, able in abilities) + ".")
    for note in info.notes:
        st.info(note)


def text_summary(trace: Trace) -> None:
    """Token count and, for causal models, the next-token top-10 with probabilities."""
    st.caption(f"{trace.n_tokens} tokens analysed" + (f" of {trace.n_tokens_in_text}" if trace.truncated else ""))
    if not trace.top_next:
        st.caption("Encoder model: no next-token prediction.")
        return
    table = pd.DataFrame({
        "next token": [visible_token(p.token) for p in trace.top_next],
        "probability": [p.probability for p in trace.top_next],
    })
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"next token": st.column_config.TextColumn(width="small"),
                                "probability": st.column_config.ProgressColumn(format="%.3f", min_value=0.0,
                                                                               max_value=1.0, width="small")})
