"""Ablation lab: knock heads out (or scale them) and watch predictions, loss and downstream attention change."""
import streamlit as st

from analysis.methods.ablation_spec import format_ablation
from analysis.methods.census import PROBE_LENGTH
from analysis.runtime.tokens import display_token
from components.ablation_cache import cached_ablation, cached_generation
from components.ablation_figures import downstream_figure, loss_curve, paired_bars
from components.census_cache import cached_census
from components.lab_selection import head_sliders, heads_box, presets, read_selection, resample_source, \
    selection_picker
from components.metric_controls import metric_options
from components.page import page_context
from components.state import bind

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
    presets(info, lambda: cached_census(state["model"], state["text"], int(state["max_tokens"]), PROBE_LENGTH, 0))
    head_sliders(info, selection)
    key = ("loss", 0, 0, None)
    if info.causal:
        with st.expander("Metric options (loss span, log-prob target, generation)"):
            key = metric_options(ctx.handle, trace, state)
            bind(st.slider, "gen_tokens", "Tokens to generate", min_value=0, max_value=40,
                 value=int(state["gen_tokens"]),
                 help="Greedy continuation before and after (each token is one more forward pass).")

spec = format_ablation(selection)
args = (state["model"], state["text"], int(state["max_tokens"]))
source_text = resample_source(selection, trace, state)
result = cached_ablation(*args, spec, ("loss", *key[1:]), source_text)
if not selection:
    st.info("Select heads to see what changes: type them, click the grid, or apply a preset.")
if info.causal:
    after = result.top.sort_values("after", ascending=False).iloc[0]
    before = result.top.sort_values("before", ascending=False).iloc[0]
    metrics = st.columns(4)
    metrics[0].metric("Top prediction after", f"{display_token(after.token)} ({after.after:.1%})",
                      help=f"Before: {display_token(before.token)} ({before.before:.1%})")
    metrics[1].metric("Δ loss", f"{result.metrics['loss']:+.4f}", help="Mean next-token loss on the text (or span).")
    metrics[2].metric("Δ log-prob of the target", f"{result.metrics['logprob']:+.4f}")
    metrics[3].metric("KL(clean ‖ ablated)", f"{result.metrics['kl']:.4f}", help="Next-token distribution.")
    left, right = st.columns([2, 3])
    left.plotly_chart(paired_bars(result.top), key="lab_bars")
    right.plotly_chart(loss_curve(result.tokens, result.loss_before, result.loss_after), key="lab_loss")
else:
    st.metric("Mean relative change of the final hidden states", f"{result.metrics['hidden_change']:.4f}")
st.subheader("Downstream heads whose attention changed most")
if result.downstream.empty:
    st.caption("No head's attention changed (heads only affect the layers above them).")
else:
    st.dataframe(result.downstream.rename(columns={"change": "mean total-variation change"}), hide_index=True)
    st.plotly_chart(downstream_figure(result.downstream, result.patterns_before, result.patterns_after,
                                      result.tokens), key="lab_downstream")
if info.causal and state["gen_tokens"] > 0:
    st.subheader(f"Greedy continuation ({state['gen_tokens']} tokens)")
    columns = st.columns(2)
    with st.spinner("Generating…"):
        for column, title, chosen in ((columns[0], "Before (clean)", ""), (columns[1], "After (ablated)", spec)):
            column.markdown(f"**{title}**")
            column.code(cached_generation(*args, chosen, int(state["gen_tokens"]), source_text), language=None,
                        wrap_lines=True)
