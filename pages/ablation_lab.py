"""Ablation lab: knock heads out (or scale them) and watch predictions, loss and downstream attention change."""
import pandas as pd
import streamlit as st

from analysis.runtime.tokens import visible_token
from components.caches.ablation import cached_ablation, streamed_generation
from components.panels.lookback import lookback_panel
from components.figures.ablation import downstream_figure, loss_curve, paired_bars
from components.panels.lab_export import lab_downloads
from components.panels.lab_sweep import lab_sweep
from components.widgets.lab_presets import presets
from components.widgets.lab_selection import head_sliders, heads_box, read_selection, resample_source, selection_picker
from components.widgets.metrics import metric_options
from components.page import page_context
from components.state import bind

NO_TOOLBAR = {"displayModeBar": False}  # small charts: zooming adds nothing, and the toolbar would cover their titles
PICK_HINT = "Pick heads to see what changes: type them (L12H3, L14H*), click the grid, or apply a preset."

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Ablation lab")
if not info.supports_interventions:
    st.info(" ".join(info.notes) + " Pick another model in the sidebar to edit heads.")
    st.stop()
selection, link_error = read_selection(info)
if link_error:
    st.error(link_error)
controls, grid = st.columns([3, 2])
with grid:
    selection_picker(info, selection)
with controls:
    heads_box(info, selection, link_error)
    presets(info, state)
    head_sliders(info, selection)
    key = ("loss", 0, 0, None)
    if info.causal:
        with st.expander("Metric options (loss span, log-prob target, generation)"):
            key = metric_options(ctx.handle, trace, state)
            bind(st.slider, "gen_tokens", "Tokens to generate", min_value=0, max_value=40,
                 value=int(state["gen_tokens"]),
                 help="Greedy continuation before and after (each token is one more forward pass).")

args = (state["model"], state["text"], int(state["max_tokens"]))


def continuation(slot, chosen: tuple, source: str = "") -> str:
    """The greedy continuation with ``chosen`` applied, written into ``slot`` as it is generated."""
    return streamed_generation(*args, chosen, int(state["gen_tokens"]), source,
                               lambda text: slot.code(text, language=None, wrap_lines=True))


if not selection:  # nothing edited yet: the clean run at once, from the trace
    if not info.causal:
        st.info(f"{PICK_HINT} For this encoder the lab reports how much the final hidden states change and which "
                "downstream heads' attention moves.")
        st.stop()
    st.info(f"{PICK_HINT} Until then: the clean model's predictions and the loss of every token.")
    clean_top = pd.DataFrame({"token": [p.token for p in trace.top_next],
                              "before": [p.probability for p in trace.top_next]})
    left, right = st.columns([2, 3])
    left.plotly_chart(paired_bars(clean_top, clean_only=True), key="lab_bars", config=NO_TOOLBAR)
    right.plotly_chart(loss_curve(trace.tokens, trace.token_loss, None), key="lab_loss")
    if state["gen_tokens"] > 0:
        st.subheader(f"Greedy continuation ({state['gen_tokens']} tokens)")
        continuation(st.empty(), ())
        lookback_panel(state, ())
    st.stop()

source_text = resample_source(selection, trace, state)
with st.spinner(f"Running the model with {len(selection)} edited head{'s' if len(selection) > 1 else ''}…"):
    result = cached_ablation(*args, selection, ("loss", *key[1:]), source_text)
if info.causal:
    after = result.top.sort_values("after", ascending=False).iloc[0]
    before = result.top.sort_values("before", ascending=False).iloc[0]
    metrics = st.container(horizontal=True, gap="large")  # wraps onto a second line on narrow screens
    metrics.metric("Top prediction after", f"{visible_token(after.token)} ({after.after:.1%})", width="content",
                   help=f"Before: {visible_token(before.token)} ({before.before:.1%})")
    metrics.metric("Δ loss", f"{result.metrics['loss']:+.4f}", width="content",
                   help="Mean next-token loss on the text (or span).")
    metrics.metric("Δ log-prob of the target", f"{result.metrics['logprob']:+.4f}", width="content")
    metrics.metric("KL(clean ‖ ablated)", f"{result.metrics['kl']:.4f}", width="content",
                   help="Next-token distribution.")
    left, right = st.columns([2, 3])
    left.plotly_chart(paired_bars(result.top), key="lab_bars", config=NO_TOOLBAR)
    right.plotly_chart(loss_curve(result.tokens, result.loss_before, result.loss_after), key="lab_loss")
else:
    st.metric("Mean relative change of the final hidden states", f"{result.metrics['hidden_change']:.4f}")
st.subheader("Downstream heads whose attention changed most")
if result.downstream.empty:
    st.caption("No head's attention changed (heads only affect the layers above them).")
else:
    st.dataframe(result.downstream.rename(columns={"change": "mean total-variation change"}), hide_index=True)
    st.plotly_chart(downstream_figure(result.downstream, result.patterns_before, result.patterns_after,
                                      result.tokens), key="lab_downstream", config=NO_TOOLBAR)
if info.causal and state["gen_tokens"] > 0:
    st.subheader(f"Greedy continuation ({state['gen_tokens']} tokens)")
    columns = st.columns(2)
    slots = []
    for column, title in zip(columns, ("Before (clean)", "After (ablated)")):
        column.markdown(f"**{title}**")
        slots.append(column.empty())
    continuations = {"before": continuation(slots[0], ()), "after": continuation(slots[1], selection, source_text)}
    lookback_panel(state, selection)
else:
    continuations = {}
lab_downloads(state["model"], result, continuations)
lab_sweep(ctx.handle, state, selection)
