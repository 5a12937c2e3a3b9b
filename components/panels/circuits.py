"""Page sections on what a head computes, read from its weights: its OV and QK circuits through the vocabulary
(Elhage et al. 2021; MAPS, Elhelo & Geva 2024) and its composition partners (Q/K/V composition)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.heads import head_label
from analysis.methods.composition import KINDS
from analysis.methods.metrics import resolve_target
from analysis.runtime.handle import ModelHandle
from analysis.runtime.tokens import display_token
from components.caches.weights import cached_composition, cached_query_keys, cached_token_writes, cached_top_pairs, \
    cached_weight_notes, cached_weights_available
from components.figures.writes import logit_lens_bars
from components.state import bind, update_state

OV_HELP = ("The direct OV circuit W_U·W_O·W_V·W_E′ᵀ (Elhage et al. 2021): what the head writes to the logits when it "
           "attends to a token. Layer 0 reads the embedding W_E; later layers read the effective embedding "
           "E′ = E + MLP₀(E), as MAPS (Elhelo & Geva 2024) does. Each norm's gain is folded in, its 1/RMS scale left "
           "out; no text is involved.")
QK_HELP = ("The QK circuit W_Eᵀ·W_Qᵀ·W_K·W_E: which key tokens a query token scores highest, at relative position 0 "
           "(rotary position embeddings left out).")
COMPOSITION_HELP = ("Composition scores (Elhage et al. 2021): how much a later head B reads what an earlier head A "
                    "writes — through its queries (Q: ‖W_QK,Bᵀ·W_OV,A‖), keys (K: ‖W_QK,B·W_OV,A‖) or values "
                    "(V: ‖W_OV,B·W_OV,A‖), each over the product of the two Frobenius norms. The baseline is the "
                    "mean score of random matrices of the same shapes: scores well above it stand out.")


def weights_available(model: str) -> bool:
    """True if this model's per-head weights can be read (else the notes caption says why not)."""
    return cached_weights_available(model)


def weight_notes_caption(model: str) -> None:
    """What the weight-based views leave out for this model (or why they are unavailable)."""
    notes = cached_weight_notes(model)
    if notes:
        st.caption(" ".join(notes))


def _typed_token(handle: ModelHandle, field: str, label: str, state: dict, placeholder: str) -> int | None:
    bind(st.text_input, field, label, value=state[field], placeholder=placeholder,
         help="With its leading space, e.g. ' Paris'. A text of several tokens uses its first.")
    token_id, warning = resolve_target(handle.tokenizer, state[field])
    if warning:
        st.warning(warning)
    return token_id


def ov_qk_section(handle: ModelHandle, layer: int, head: int, state: dict, pairs: int = 10) -> None:
    """Top OV pairs over the vocabulary sample, what the head writes for a typed token, and QK for a typed query."""
    model, label = handle.info.name, head_label(layer, head)
    st.caption(OV_HELP)
    left, right = st.columns(2)
    with left:
        st.markdown(f"**{label}'s strongest token pairs (read → written), over a sample of the vocabulary**")
        top = cached_top_pairs(model, layer, head, pairs)
        st.dataframe(top.assign(read=top["read"].map(display_token), written=top["written"].map(display_token))[
            ["read", "written", "value"]], hide_index=True, width="stretch")
    with right:
        token_id = _typed_token(handle, "ov_token", "Type a token: what the head writes when it attends to it",
                                state, "e.g. ' Paris'")
        if token_id is not None:
            writes = cached_token_writes(model, layer, head, token_id)
            name = display_token(handle.tokenizer.decode([token_id]))
            st.plotly_chart(logit_lens_bars(writes[writes["direction"] == "promoted"],
                                            writes[writes["direction"] == "suppressed"],
                                            f"{label} attending to {name}: promoted and suppressed"), key="ov_token_bars")
    token_id = _typed_token(handle, "qk_token", "Type a query token: which keys it attends to most (QK)", state,
                            "e.g. ' the'")
    st.caption(QK_HELP)
    if token_id is not None:
        keys = cached_query_keys(model, layer, head, token_id)
        keys = keys.assign(token=keys["token"].map(display_token)).rename(columns={"logit": "score"})
        st.dataframe(keys[["direction", "token", "token_id", "score"]], hide_index=True, width="stretch")


def partners(model: str, label: str, kind: str, upstream: bool, k: int) -> pd.DataFrame:
    """The k strongest partners of a head for one kind: its sources (upstream) or its targets (downstream)."""
    table = cached_composition(model, kind)
    mine = table[table["target" if upstream else "source"] == label]
    return mine.nlargest(k, "score")


def partner_buttons(model: str, label: str, k: int = 4) -> None:
    """Per kind, the strongest partners upstream and downstream as buttons that open their head page."""
    st.caption(COMPOSITION_HELP)
    for upstream, title in ((True, "Reads from (upstream)"), (False, "Read by (downstream)")):
        st.markdown(f"**{title}**")
        columns = st.columns(len(KINDS))
        for column, kind in zip(columns, KINDS):
            rows = partners(model, label, kind, upstream, k)
            with column:
                baseline = float(cached_composition(model, kind)["baseline"].iloc[0])
                st.caption(f"{kind}-composition (baseline {baseline:.3f})")
                if rows.empty:
                    st.caption("none (first or last layer)")
                for row in rows.itertuples():
                    layer, head = ((row.source_layer, row.source_head) if upstream else
                                   (row.target_layer, row.target_head))
                    st.button(f"{head_label(layer, head)} · {row.score:.3f} ({row.score / baseline:.1f}×)",
                              key=f"partner_{kind}_{upstream}_{layer}_{head}", on_click=update_state,
                              kwargs={"layer": int(layer), "head": int(head)},
                              help=f"Open {head_label(layer, head)}'s head page")
