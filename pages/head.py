"""Head page: everything known about one head on one screen — its census label and scores, its pattern on the text,
what its weights compute (OV pairs, copying and successor scores, composition partners), its importance and direct
logit attribution on the text, team notes, and links to every full page."""
import numpy as np
import streamlit as st

from analysis.heads import head_label
from analysis.methods.logit_attribution import LogitAttributionUnsupported, check_supported, head_attribution
from components.caches.ablation import cached_gradient
from components.caches.census import state_census
from components.caches.flow import cached_decomposition
from components.caches.models import cached_pattern
from components.figures.attention import head_figure, pooled_head_figure
from components.figures.census import SCORE_NAMES
from components.navigation import page_file
from components.page import page_context
from components.panels.circuits import ov_qk_section, partner_buttons, weight_notes_caption
from components.panels.notes import notes_panel
from components.widgets.head_picker import head_picker

THUMBNAIL_TOKENS = 256  # longer texts are drawn as block means
HEADLINE_SCORES = ("induction", "previous_token", "first_token", "copying", "maps_copying", "successor")

ctx = page_context()
handle, trace, state = ctx.handle, ctx.trace, ctx.state
info = handle.info
layer, head = head_picker(info, state)
label = head_label(layer, head)
st.title(f"Head {label}")
model, source = info.name, (state["model"], state["text"], int(state["max_tokens"]))

census = state_census(state)
row = census.set_index("head").loc[label]
st.markdown(f"**Census label:** {row['label'] or 'none'} (on your text and the induction probe; thresholds as on "
            "the census page)")
cells = st.columns(len(HEADLINE_SCORES))
for cell, name in zip(cells, HEADLINE_SCORES):
    value = row[name]
    cell.metric(SCORE_NAMES[name], "—" if not np.isfinite(value) else f"{value:.3f}")
weight_notes_caption(model)

left, right = st.columns([1, 1])
with left:
    st.subheader("Pattern on your text")
    pattern = cached_pattern(*source, layer, head)
    if trace.n_tokens <= THUMBNAIL_TOKENS:
        figure = head_figure(pattern, trace.display_tokens, f"{label}: query → key", state["hide_first"])
    else:
        figure = pooled_head_figure(pattern, trace.display_tokens, f"{label}: block means", 96, state["hide_first"])
    figure.update_layout(height=420)
    st.plotly_chart(figure, key="head_page_pattern")
with right:
    st.subheader("On your text")
    if info.causal and info.supports_interventions:
        gradient = cached_gradient(*source, ("loss", 0, 0, None), "zero").set_index("head")
        rank = int(gradient["importance"].rank(ascending=False).loc[label])
        st.metric("Importance for the loss (gradient, Michel et al. 2019)", f"{gradient.loc[label, 'importance']:.4f}",
                  help=f"|∂loss/∂ξ| for a gate on the head's output; rank {rank} of {info.n_total_heads}.")
        st.caption(f"Rank {rank} of {info.n_total_heads} heads.")
    try:
        check_supported(handle)
    except LogitAttributionUnsupported as error:
        st.caption(f"Direct logit attribution: {error}")
    else:
        last = cached_decomposition(*source, trace.n_tokens - 1)
        top_id = int(last.logits.argmax())
        dla = float(head_attribution(handle, last, top_id).set_index("head").loc[label, "dla"])
        st.metric(f"Direct logit for the prediction {trace.top_next[0].token!r}", f"{dla:+.3f}",
                  help="The head's write at the last position through the final norm (frozen) and the unembedding.")
    st.markdown("**Full pages**")
    for key, text in (("head", "Head view"), ("census", "Head census"), ("importance", "Head importance"),
                      ("writes", "What a head writes"), ("composition", "Composition"), ("lab", "Ablation lab"),
                      ("patching", "Activation patching")):
        st.page_link(page_file(key), label=f"{text} ({label})" if key in {"head", "writes"} else text)

if info.causal:
    st.subheader("OV and QK circuits through the vocabulary")
    ov_qk_section(handle, layer, head, state)
st.subheader("Composition partners")
partner_buttons(model, label)
notes_panel(model, layer, head)
