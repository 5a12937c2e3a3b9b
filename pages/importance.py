"""Head importance: how much each head matters for a metric, by gradient (at once) and exact ablation (a job)."""
import streamlit as st

from analysis.methods.importance import rank_correlation
from analysis.methods.metrics import METRICS
from components.caches.ablation import cached_gradient
from components.figures.grids import hover_values, importance_grid
from components.widgets.head_picker import head_grid
from components.figures.grids import add_head_click_layer
from components.widgets.lab_selection import add_head
from components.widgets.metrics import ablation_mode_choice, metric_choice, metric_options
from components.navigation import page_file
from components.page import page_context, require_editable_causal_model
from components.panels.page_jobs import exact_importance_request, page_job_panel

ADD_TO_LAB = "click to add it to the ablation lab"

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Head importance")
require_editable_causal_model(info, "importance is measured on next-token predictions, so it needs a causal "
                              "language model. Its heads can still be edited in the Ablation lab, which reports how "
                              "much the hidden states change.")
top = st.columns([3, 2])
with top[0]:
    name = metric_choice(state)
with top[1]:
    ablation_mode_choice(state)
key = metric_options(ctx.handle, trace, state, show_span=name == "loss", show_target=name == "logprob")
args = (state["model"], state["text"], int(state["max_tokens"]), key, state["method"])
st.caption("Gradient: |∂metric/∂gate| with a gate on every head's output (Michel et al. 2019, one forward and one "
           "backward; for KL, ½·p(ŷ)·(∂ log p(ŷ)/∂gate)², since KL's gradient is zero at the clean model). "
           f"Exact: {METRICS[name]} when the head is ablated alone. Click a cell to add the head to the ablation lab.")

gradient = cached_gradient(*args)
summary = st.empty()
left, right = st.columns(2)
with left:
    picked = head_grid(add_head_click_layer(
        importance_grid(gradient, "importance", "Gradient estimate |∂M/∂ξ|", signed=False),
        info.n_layers, info.n_heads, hover_values(gradient, "importance"), marker_size=14, click_action=ADD_TO_LAB),
        key="importance_gradient")
with right:
    exact = page_job_panel(
        exact_importance_request(info, state),
        f"**Exact ablation** sets each of the {info.n_layers * info.n_heads} heads to "
        f"{'zero' if state['method'] == 'zero' else 'its reference mean'} in turn and measures the change "
        "(one restart per layer; tens of seconds on a CPU at a few hundred tokens).",
        f"Run exact ablation of all {info.n_layers * info.n_heads} heads", "importance_run_exact")
    if exact is not None:
        picked = head_grid(add_head_click_layer(
            importance_grid(exact, "delta", f"Exact: {METRICS[name]} when ablated", signed=name != "kl"),
            info.n_layers, info.n_heads, hover_values(exact, "delta"), marker_size=14, click_action=ADD_TO_LAB),
            key="importance_exact") or picked

if exact is not None:
    correlation = rank_correlation(gradient["importance"], exact["importance"])
    summary.columns(3)[0].metric("Rank correlation |gradient| vs |exact|", f"{correlation:.2f}",
                                help="Spearman's ρ over all heads: how well the one-pass gradient ranks heads like "
                                     "the exact ablation does.")
if picked is not None:
    size = add_head(info, *picked, mode=state["method"])
    st.toast(f"Added L{picked[0]}H{picked[1]} to the ablation lab ({size} head{'s' if size > 1 else ''} selected).")
st.page_link(page_file("lab"), label="Open the ablation lab with the selected heads", icon=":material/science:")

table = gradient[["head", "estimate", "importance"]]
if exact is not None:
    table = exact[["head", "delta"]].merge(table, on="head")
table = table.rename(columns={"delta": "exact Δ", "estimate": "gradient estimate", "importance": "|gradient|"})
ranking = table["exact Δ"].abs() if exact is not None else table["|gradient|"]
st.subheader(f"Most important heads ({'exact' if exact is not None else 'gradient estimate'})")
st.dataframe(table.reindex(ranking.sort_values(ascending=False).index).head(15), hide_index=True, width="stretch")
st.download_button("Download all heads (CSV)", table.to_csv(index=False), file_name="head_importance.csv",
                   mime="text/csv")
