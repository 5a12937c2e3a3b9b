"""What a head writes: its output read through the unembedding, and direct logit attribution of every head."""
import streamlit as st

from analysis.methods.logit_attribution import LogitAttributionUnsupported, attribution_terms, check_supported, \
    head_attribution, head_logit_lens
from analysis.methods.metrics import resolve_target
from analysis.runtime.tokens import display_token
from components.figures.grids import hover_values, importance_grid
from components.caches.flow import cached_decomposition
from components.widgets.flow import position_select
from components.widgets.head_picker import head_grid, head_picker
from components.figures.grids import add_head_click_layer
from components.navigation import page_file
from components.page import page_context
from components.state import bind, update_state
from components.figures.writes import logit_lens_bars

ctx = page_context()
handle, trace, state = ctx.handle, ctx.trace, ctx.state
info = handle.info
st.title("What a head writes")
try:
    check_supported(handle)
except LogitAttributionUnsupported as error:
    st.info(f"{error} Rollout (Flow) and Compare work for every model.")
    st.stop()
st.caption("A head's write is its output z after its slice of the output projection W_O. Read through the final "
           "RMSNorm and the unembedding, it gives a direct logit for every token (logit lens of a head). The norm's "
           "scale 1/RMS is frozen at its value in the clean run, which makes the map linear: the direct logits of "
           "all heads, MLPs, biases and the embedding then add up exactly to the model's logit (Elhage et al. 2021). "
           "A direct logit ignores effects through later layers.")
tokens = trace.display_tokens
args = (state["model"], state["text"], int(state["max_tokens"]))

st.subheader("One head at one position")
pick, where = st.columns([2, 1])
with pick:
    layer, head = head_picker(info, state)
with where:
    position = position_select(state, "dla_token", "Position", tokens, "The token whose stream the head writes into.")
here = cached_decomposition(*args, position)
promoted, suppressed = head_logit_lens(handle, here, layer, head)
top_id = int(here.logits.argmax())
top_token = display_token(handle.tokenizer.decode([top_id]))
own = float(head_attribution(handle, here, top_id).set_index("head").loc[f"L{layer}H{head}", "dla"])
st.metric(f"L{layer}H{head}'s direct logit for the model's prediction here ({top_token})", f"{own:+.3f}")
st.plotly_chart(logit_lens_bars(promoted, suppressed, f"Tokens L{layer}H{head} promotes and suppresses at "
                                f"{tokens[position]} ({position})"), key="writes_lens")

st.subheader("Direct logit attribution at the last position")
last = cached_decomposition(*args, trace.n_tokens - 1)
bind(st.text_input, "dla_target", "Target token", value=state["dla_target"],
     placeholder=f"top prediction ({trace.top_next[0].token!r})",
     help="With its leading space, e.g. ' Mary'. Empty: the model's top prediction.")
target_id, warning = resolve_target(handle.tokenizer, state["dla_target"])
if warning:
    st.warning(warning)
if target_id is None:
    target_id = int(last.logits.argmax())
target = display_token(handle.tokenizer.decode([target_id]))
terms = attribution_terms(handle, last, target_id)
heads = head_attribution(handle, last, target_id)
by_kind = terms.groupby("kind")["dla"].sum()
cells = st.columns(4)
cells[0].metric(f"Logit of {target}", f"{last.logits[target_id]:.3f}")
cells[1].metric("Sum of all terms", f"{terms['dla'].sum():.3f}",
                help="Embedding + every head + attention biases + MLPs (+ output bias): equals the logit.")
cells[2].metric("All heads", f"{by_kind.get('head', 0.0):+.3f}")
cells[3].metric("All MLPs", f"{by_kind.get('mlp', 0.0):+.3f}")
grid = importance_grid(heads, "dla", f"Direct logit attribution to {target} (click a head to open it)", signed=True)
picked = head_grid(add_head_click_layer(grid, info.n_layers, info.n_heads, hover_values(heads, "dla"),
                                        marker_size=14), key="writes_dla")
if picked is not None:
    update_state(layer=picked[0], head=picked[1])
    st.switch_page(page_file("head"))
ranked = heads.sort_values("dla", ascending=False)
left, right = st.columns(2)
left.markdown(f"**Heads pushing {target} up**")
left.dataframe(ranked.head(10), hide_index=True, width="stretch")
right.markdown(f"**Heads pushing {target} down**")
right.dataframe(ranked.tail(10).iloc[::-1], hide_index=True, width="stretch")
st.download_button("Download all terms (CSV)", terms.to_csv(index=False), file_name="direct_logit_attribution.csv",
                   mime="text/csv")
