"""Compare: one model on two texts, or two models on one text — the selected head side by side, heads ranked by change."""
import streamlit as st

from analysis.methods.compare import CompareError, align_tokens, identity_alignment, pattern_difference
from analysis.runtime.models import EMBEDDED_MODELS, ModelLoadError, is_installed
from analysis.runtime.trace import TextError
from components.figures.grids import hover_values, importance_grid
from components.caches.models import cached_model, cached_pattern, cached_trace
from components.caches.compare import ranked_heads
from components.figures.compare import MAX_CELLS, aligned_labels, is_pooled, pattern_panel, unpaired_summary
from components.widgets.flow import select_head
from components.widgets.head_picker import head_grid, head_picker
from components.figures.grids import add_head_click_layer
from components.page import page_context
from components.panels.sidebar import model_allowed
from components.state import bind

SAME_MODEL = ""

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Compare")
st.caption("Each head's attention rows in the two runs are compared with the Jensen–Shannon distance (base 2: 0 = "
           "identical, 1 = disjoint), averaged over query positions. Two texts are aligned by their tokens (difflib's "
           "SequenceMatcher): matching tokens and one-for-one substitutions are paired, inserted or deleted tokens "
           "are left out, and only the paired rows and columns are compared.")
max_tokens = int(state["max_tokens"])
other_models = [SAME_MODEL, *[name for name in EMBEDDED_MODELS if name != state["model"] and is_installed(name)]]
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
two_texts = second_model == state["model"]
if two_texts:
    bind(st.text_area, "compare_text", "Second text", value=state["compare_text"], height=80,
         help="Default: the IOI prompt with the subject swapped (corrupted run).")
second_run = (second_model, state["compare_text"] if two_texts else state["text"])
try:
    second_info = cached_model(second_model).info
    second = cached_trace(*second_run, max_tokens)
except (ModelLoadError, TextError) as error:
    st.error(f"The second run failed: {error}")
    st.stop()

if two_texts:
    alignment = align_tokens(trace.tokens, second.tokens)
elif trace.tokens == second.tokens:
    alignment = identity_alignment(trace.n_tokens)
else:
    alignment = None
if alignment is not None and any(alignment.left_out):
    st.info(f"{alignment.n_aligned} token pairs are compared. Left out, without a partner (inserted, deleted, or in a "
            f"replaced span of another length): {unpaired_summary(trace.display_tokens, alignment.first, 'first')}; "
            f"{unpaired_summary(second.display_tokens, alignment.second, 'second')}.")
try:
    ranked = ranked_heads((state["model"], state["text"]), second_run, max_tokens)
except CompareError as error:
    st.warning(str(error))
    ranked = None

layer, head = head_picker(info, state)
label = f"L{layer}H{head}"
match = ranked.set_index("head").loc[label, "match"] if ranked is not None and "match" in ranked else label
m_layer, m_head = (int(part) for part in match[1:].split("H"))
if m_layer >= second_info.n_layers or m_head >= second_info.n_heads:
    m_layer, m_head = min(layer, second_info.n_layers - 1), min(head, second_info.n_heads - 1)
a = cached_pattern(state["model"], state["text"], max_tokens, layer, head)
b = cached_pattern(*second_run, max_tokens, m_layer, m_head)
names = ((f"{label} · {state['model']}", f"L{m_layer}H{m_head} · {second_model}") if not two_texts
         else (f"{label} · first text", f"{label} · second text"))
panels = st.columns(2)
for panel, name, pattern, tokens, key in ((panels[0], names[0], a, trace.display_tokens, "compare_first"),
                                          (panels[1], names[1], b, second.display_tokens, "compare_second")):
    panel.markdown(f"**{name}**")
    panel.plotly_chart(pattern_panel(pattern, [f"{t} ({i})" for i, t in enumerate(tokens)]), key=key)
if ranked is None or alignment is None:
    st.stop()

difference, summary = st.columns(2)
difference.markdown("**Difference (second − first), paired tokens**")
difference.plotly_chart(pattern_panel(pattern_difference(a, b, alignment),
                                      aligned_labels(trace.display_tokens, second.display_tokens, alignment),
                                      signed=True), key="compare_difference")
distance = float(ranked.set_index("head").loc[label, "js_distance"])
summary.metric(f"{label}: mean JS distance", f"{distance:.4f}",
               help="Mean over the paired query rows of the Jensen–Shannon distance between the two patterns.")
if is_pooled(max(trace.n_tokens, second.n_tokens)):
    summary.caption(f"Long texts are drawn pooled: each cell is the mean weight of a block of consecutive tokens "
                    f"(at most {MAX_CELLS} blocks per side); the distances use every paired token.")
with summary:
    st.markdown("**Heads whose attention changed most**")
    generation = st.session_state.get("compare_table_clicks", 0)  # a fresh table after each use of a click
    event = st.dataframe(ranked.head(20), hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key=f"compare_table_{generation}", height=300)
    rows = event.selection.rows if event is not None else []
    if rows:
        st.session_state["compare_table_clicks"] = generation + 1
        select_head(int(ranked.iloc[rows[0]]["layer"]), int(ranked.iloc[rows[0]]["head_index"]))

by_head = ranked.sort_values(["layer", "head_index"])
grid = importance_grid(by_head, "js_distance", "JS distance per head (click a head to select it)", signed=False,
                       colorbar_title="JS distance")
left, right = st.columns([3, 2])
with left:
    picked = head_grid(add_head_click_layer(grid, info.n_layers, info.n_heads, hover_values(by_head, "js_distance"),
                                            marker_size=14, click_action="click to select it"), key="compare_grid")
if picked is not None:
    select_head(*picked)
right.download_button("Download all heads (CSV)", ranked.to_csv(index=False), file_name="head_comparison.csv",
                      mime="text/csv")
