"""Activation patching: find the heads that carry a behaviour by swapping activations between two prompts."""
import streamlit as st

from analysis.methods.importance import rank_correlation
from analysis.methods.metrics import MetricError
from analysis.methods.patching import PatchingError, attribution_defined
from analysis.runtime.tokens import display_token
from components.widgets.head_picker import head_grid
from components.widgets.lab_selection import add_head
from components.navigation import page_file
from components.page import page_context, require_editable_causal_model, second_trace_or_stop
from components.panels.page_jobs import exact_patching_request, page_job_panel
from components.caches.patching import IN_PAGE_TOKENS, cached_attribution, cached_summary, exact_result
from components.widgets.patching import patching_controls, position_heads
from components.figures.patching import effect_grid, position_grid
from components.state import bind

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Activation patching")
st.caption("Run a clean and a corrupted prompt, then swap one activation between them and see how much of the "
           "clean answer comes back (Vig et al. 2020; Meng et al. 2022; Wang et al. 2022, the IOI circuit; "
           "Heimersheim & Nanda 2024). Effect: 0 = the corrupted run, 1 = the clean run.")
require_editable_causal_model(info, "activation patching measures the next-token prediction at the last "
                              "position, so it needs a causal language model. Compare two texts on this model in "
                              "Compare, or pick a causal model in the sidebar.")
request = patching_controls(ctx.handle, trace, state)
exact_as_job = trace.n_tokens > IN_PAGE_TOKENS  # the exact grid runs in the background; no position grids
second_trace_or_stop(trace, state, "Patching needs a clean and a corrupted prompt of the same token length",
                     ("Clean prompt", "Corrupted prompt"))
try:
    summary = cached_summary(request)
except (PatchingError, MetricError) as error:
    st.error(str(error))
    st.stop()
centre = 0.0 if request.direction == "denoise" else 1.0
numbers = st.container(horizontal=True, gap="large")  # wraps onto a second line on a narrow page
numbers.metric("Target / distractor", f"{display_token(summary.target)} / {display_token(summary.distractor)}",
               width="content")
numbers.metric("Metric, clean run", f"{summary.clean:.3f}", width="content")
numbers.metric("Metric, corrupted run", f"{summary.corrupted:.3f}", width="content")
correlation_slot = numbers.empty()
st.caption(f"Target {display_token(summary.target)} · distractor {display_token(summary.distractor)} "
           "(the tokens the metric uses, as resolved from the typed words or the two runs' top predictions).")

st.caption("Left, at once: attribution patching (Nanda 2023; Syed et al. 2023), the linear estimate "
           "(z_source − z_base)·∂metric/∂z of every head from two forwards and one backward. It misses what is not "
           "linear in a head's output — saturated attention, large swaps (Kramár et al. 2024) — so the exact grid "
           "on the right, one patched run per head, is the reference. Click a head to send it to the ablation lab "
           "as a resample from the corrupted prompt.")
estimated = attribution_defined(request.metric, request.direction)
if not estimated:
    st.info("KL's gradient is zero at the clean run (KL is smallest there), so attribution patching has no estimate "
            "of KL when noising: the left grid is greyed and nothing is compared with it. The exact grid is "
            "unaffected.")
left, right = st.columns(2)
with left:
    estimate = cached_attribution(request)
    title = "Attribution patching (linear estimate)" if estimated else "Attribution patching: undefined for KL, noising"
    picked = head_grid(effect_grid(estimate, title, centre, defined=estimated), key="patch_estimate")
with right:
    if exact_as_job:
        exact = page_job_panel(
            exact_patching_request(info, state),
            f"**Exact head patching** patches each of the {info.n_layers * info.n_heads} heads alone "
            f"({request.direction}): one run of {trace.n_tokens} tokens per head, restarted at its layer. That takes "
            "minutes on a CPU at this length, so it runs as a job.",
            f"Run exact patching of all {info.n_layers * info.n_heads} heads", "patch_run_exact")
    else:
        exact = exact_result("heads", request, "Exact head patching")
    if exact is not None:
        picked = head_grid(effect_grid(exact, f"Exact head patching ({request.direction})", centre),
                           key="patch_exact") or picked
if exact is not None and estimated:
    correlation = rank_correlation(estimate["effect"], exact["effect"])
    correlation_slot.metric("Rank correlation estimate vs exact", f"{correlation:.2f}",
                            help="Spearman's ρ over all heads.", width="content")
elif not estimated:
    correlation_slot.metric("Rank correlation estimate vs exact", "—",
                            help="Undefined: there is no linear estimate of KL when noising.", width="content")
if picked is not None:
    size = add_head(info, *picked, mode="resample")
    st.toast(f"Added L{picked[0]}H{picked[1]} to the ablation lab as a resample from the corrupted prompt "
             f"({size} head{'s' if size > 1 else ''} selected).")
st.page_link(page_file("lab"), label="Open the ablation lab with the selected heads", icon=":material/science:",
             help="On the clean prompt, the heads' outputs resampled from the corrupted one.")

tables = [frame[["head", "effect"]].rename(columns={"effect": f"effect {name}"})
          for name, frame in (("exact", exact), ("estimate", estimate if estimated else None)) if frame is not None]
if tables:
    table = tables[0] if len(tables) == 1 else tables[0].merge(tables[1], on="head")
    ranking = table[table.columns[1]]
    st.dataframe(table.reindex((ranking - centre).abs().sort_values(ascending=False).index).head(12),
                 hide_index=True, width="stretch")
    st.download_button("Download all heads (CSV)", table.to_csv(index=False), file_name="head_patching.csv",
                       mime="text/csv")

st.subheader("Position by position")
if exact_as_job:
    st.info(f"The position-by-position grids take one patched run per head (or layer) and position, "
            f"{trace.n_tokens} positions here; the page computes them for texts up to {IN_PAGE_TOKENS} tokens. "
            "Patch a shorter excerpt that keeps the behaviour to see them.")
    st.stop()
heads = position_heads(ctx.handle, exact, centre)
if heads:
    frame = exact_result("positions", request, "Patching heads position by position", heads)
    st.plotly_chart(position_grid(frame, "head", "Head × position: one head's output at one position", centre),
                    key="patch_positions")
bind(st.toggle, "patch_residual", "Residual-stream grid (layer × position, causal tracing)",
     value=bool(state["patch_residual"]),
     help=f"Patch the whole residual stream entering each layer at one position: {info.n_layers} × "
          f"{trace.n_tokens} runs (Meng et al. 2022).")
if state["patch_residual"]:
    try:
        frame = exact_result("residual", request, "Patching the residual stream")
    except PatchingError as error:
        st.error(str(error))
    else:
        st.plotly_chart(position_grid(frame, "layer", "Residual stream entering each layer, patched at one position",
                                      centre), key="patch_residual_grid")
