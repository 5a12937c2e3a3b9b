"""Compare: one model on two texts, or two models on one text — the selected head side by side, heads ranked by change."""
import streamlit as st

from analysis.methods.compare import CompareError, pattern_difference
from analysis.runtime.models import EMBEDDED_MODELS, ModelLoadError
from analysis.runtime.trace import TextError
from components.ablation_figures import hover_values, importance_grid
from components.cache import cached_model, cached_trace
from components.compare_figures import comparison_figure
from components.flow_cache import cached_comparison
from components.flow_controls import select_head, synced_head_picker
from components.head_picker import add_head_click_layer, head_grid
from components.page import page_context
from components.sidebar import model_allowed
from components.state import bind

SAME_MODEL = ""

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Compare")
st.caption("Each head's attention rows in the two runs are compared with the Jensen–Shannon distance (base 2: 0 = "
           "identical, 1 = disjoint), averaged over query positions. Two texts are aligned on the shorter one.")
max_tokens = int(state["max_tokens"])
other_models = [SAME_MODEL, *[name for name in EMBEDDED_MODELS if name != state["model"]]]
current = state["compare_model"]
if current not in other_models:
    other_models.append(current)
bind(st.selectbox, "compare_model", "Compare with", options=other_models, index=other_models.index(current),
     format_func=lambda name: "the same model on a second text" if name == SAME_MODEL else f"{name} on this text")
second_model = state["compare_model"] or state["model"]
if second_model != state["model"] and not model_allowed(second_model):
    st.error(f"This link names the second model '{second_model[:80]}', which this server does not serve. "
             "Pick another one above.")
    st.stop()
if second_model == state["model"]:
    bind(st.text_area, "compare_text", "Second text", value=state["compare_text"], height=80,
         help="Default: the IOI prompt with the subject swapped (corrupted run).")
second_text = state["compare_text"] if second_model == state["model"] else state["text"]
try:
    second_info = cached_model(second_model).info
    second = cached_trace(second_model, second_text, max_tokens)
except (ModelLoadError, TextError) as error:
    st.error(f"The second run failed: {error}")
    st.stop()
first_key, second_key = (state["model"], state["text"]), (second_model, second_text)

try:
    ranked = cached_comparison(first_key, second_key, max_tokens)
except CompareError as error:
    st.warning(str(error))
    ranked = None
layer, head = synced_head_picker(info, state)
label = f"L{layer}H{head}"
match = ranked.set_index("head").loc[label, "match"] if ranked is not None and "match" in ranked else label
m_layer, m_head = (int(part) for part in match[1:].split("H"))
if m_layer >= second_info.n_layers or m_head >= second_info.n_heads:
    m_layer, m_head = min(layer, second_info.n_layers - 1), min(head, second_info.n_heads - 1)
a, b = trace.attentions[layer, head], second.attentions[m_layer, m_head]
difference = pattern_difference(a, b) if ranked is not None else None
names = (f"{label} · {state['model']}" if second_model != state["model"] else f"{label} · first text",
         f"L{m_layer}H{m_head} · {second_model}" if second_model != state["model"] else f"{label} · second text")
st.plotly_chart(comparison_figure(a, b, difference, (trace.display_tokens, second.display_tokens), names),
                key="compare_heads")
if ranked is None:
    st.stop()

distance = float(ranked.set_index("head").loc[label, "js_distance"])
st.metric(f"{label}: mean JS distance", f"{distance:.4f}",
          help="Mean over query rows of the Jensen–Shannon distance between the two patterns.")
left, right = st.columns([3, 2])
with left:
    by_head = ranked.sort_values(["layer", "head_index"])
    grid = importance_grid(by_head, "js_distance", "JS distance per head (click a head to select it)", signed=False)
    picked = head_grid(add_head_click_layer(grid, info.n_layers, info.n_heads, hover_values(by_head, "js_distance"),
                                            marker_size=14), key="compare_grid")
    if picked is not None:
        select_head(*picked)
with right:
    st.markdown("**Heads whose attention changed most**")
    generation = st.session_state.get("compare_table_clicks", 0)  # a fresh table after each use of a click
    event = st.dataframe(ranked.head(20), hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key=f"compare_table_{generation}")
    rows = event.selection.rows if event is not None else []
    if rows:
        st.session_state["compare_table_clicks"] = generation + 1
        select_head(int(ranked.iloc[rows[0]]["layer"]), int(ranked.iloc[rows[0]]["head_index"]))
st.download_button("Download all heads (CSV)", ranked.to_csv(index=False), file_name="head_comparison.csv",
                   mime="text/csv")
