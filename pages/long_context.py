"""Long contexts: retrieval heads (needle in a haystack) and streaming heads (sink + window suffices)."""
import streamlit as st

from analysis.methods.retrieval import RETRIEVAL_THRESHOLD
from analysis.methods.streaming import kv_cache_bytes
from components.caches.long_context import cached_restriction, cached_retrieval, cached_streaming
from components.figures.grids import add_head_click_layer, hover_values, importance_grid
from components.page import page_context, require_editable_causal_model
from components.state import bind
from components.widgets.flow import select_head
from components.widgets.head_picker import head_grid

LENGTH_CHOICES = (256, 512, 1024, 2048, 4096)

ctx = page_context()
info, trace, state = ctx.handle.info, ctx.trace, ctx.state
st.title("Long contexts")
require_editable_causal_model(info, "retrieval and streaming heads are measured on generation and next-token "
                              "loss, so they need a causal language model.")

st.header("Retrieval heads")
st.caption("Wu et al. 2024: a made-up fact (the needle) sits at several depths of a haystack of the project's own "
           "text; the model answers a question about it greedily. A head's retrieval score is, over the answer's "
           "tokens that copy a needle token, the fraction where its top-1 attended key is that very needle token, "
           f"averaged over lengths × depths (0.1, 0.5, 0.9). Wu et al. found fewer than 5 % of heads above "
           f"{RETRIEVAL_THRESHOLD}.")
try:
    lengths = tuple(sorted({int(part) for part in state["lc_lengths"].split(",") if part.strip()}))
except ValueError:
    lengths = ()
controls = st.columns([3, 1, 1], vertical_alignment="bottom")
with controls[0]:
    bind(st.multiselect, "lc_lengths", "Haystack lengths (tokens)", options=list(LENGTH_CHOICES),
         default=[length for length in lengths if length in LENGTH_CHOICES],
         transform=lambda chosen: ",".join(str(length) for length in sorted(chosen)))
with controls[1]:
    bind(st.number_input, "lc_needles", "Needles", min_value=1, max_value=5, value=int(state["lc_needles"]))
with controls[2]:
    bind(st.toggle, "lc_retrieval", "Run the probe", value=state["lc_retrieval"],
         help="Several greedy answers: about a second per thousand tokens per probe on a CPU.")
if not lengths:
    st.info("Pick at least one haystack length.")
elif state["lc_retrieval"]:
    result = cached_retrieval(state["model"], lengths, int(state["lc_needles"]))
    scores = result.scores
    above = float((scores["retrieval"] > RETRIEVAL_THRESHOLD).mean())
    stats = st.columns(3)
    stats[0].metric(f"Heads above {RETRIEVAL_THRESHOLD}", f"{above:.1%}")
    stats[1].metric("Answers correct", f"{int(result.trials['correct'].sum())} / {len(result.trials)}")
    stats[2].metric("Top head", scores.sort_values("retrieval", ascending=False)["head"].iloc[0])
    picked = head_grid(add_head_click_layer(
        importance_grid(scores.fillna(0.0), "retrieval", "Retrieval score", signed=False), info.n_layers,
        info.n_heads, hover_values(scores, "retrieval"), marker_size=14), key="retrieval_grid")
    if picked is not None:
        select_head(*picked)
    st.dataframe(result.trials, hide_index=True, width="stretch", height=200)
    st.download_button("Download retrieval scores (CSV)", scores.to_csv(index=False), file_name="retrieval.csv",
                       mime="text/csv")

st.header("Streaming heads")
st.caption("DuoAttention (Xiao et al. 2024): a head restricted to the first s tokens (the sink) and the last w "
           "tokens, renormalised over them. Per head, the change of the mean next-token loss on the text when only "
           "that head is restricted; heads whose change is tiny are streaming heads, and a KV cache of s + w entries "
           "serves them. Use a long text (the sidebar's text; the model's own tokens beyond w are what is cut).")
settings = st.columns(4, vertical_alignment="bottom")
with settings[0]:
    bind(st.number_input, "lc_sink", "Sink s", min_value=0, max_value=4096, value=int(state["lc_sink"]))
with settings[1]:
    bind(st.number_input, "lc_window", "Window w", min_value=0, max_value=4096, value=int(state["lc_window"]))
with settings[2]:
    bind(st.number_input, "lc_threshold", "Streaming if |Δ loss| <", min_value=0.0, max_value=10.0,
         value=float(state["lc_threshold"]), step=0.005, format="%.3f")
with settings[3]:
    bind(st.toggle, "lc_streaming", "Score every head", value=state["lc_streaming"],
         help="One restricted run per layer's heads, from the clean stream entering that layer.")
sink, window = int(state["lc_sink"]), int(state["lc_window"])
if sink + window < 1:
    st.info("A streaming head needs a sink or a window of at least one token.")
elif trace.n_tokens <= sink + window:
    st.info(f"The text has {trace.n_tokens} tokens, within sink + window ({sink + window}): no key is cut. "
            "Paste a longer text in the sidebar.")
elif state["lc_streaming"]:
    source = (state["model"], state["text"], int(state["max_tokens"]))
    scores = cached_streaming(*source, sink, window)
    streaming = scores[scores["delta_loss"].abs() < float(state["lc_threshold"])]
    heads = tuple(zip(streaming["layer"].astype(int), streaming["head_index"].astype(int)))
    total, saved = kv_cache_bytes(info, heads, trace.n_tokens, sink, window)
    stats = st.columns(3)
    stats[0].metric("Streaming heads", f"{len(heads)} / {len(scores)}")
    stats[1].metric("All restricted at once: Δ loss", f"{cached_restriction(*source, heads, sink, window):+.4f}")
    stats[2].metric("KV cache saved (16-bit)", f"{saved / 2**20:.2f} of {total / 2**20:.2f} MiB",
                    help="A KV head's cache shrinks to s + w entries when all its query heads are streaming heads.")
    picked = head_grid(add_head_click_layer(
        importance_grid(scores, "delta_loss", "Δ loss with only this head restricted", signed=True), info.n_layers,
        info.n_heads, hover_values(scores, "delta_loss"), marker_size=14), key="streaming_grid")
    if picked is not None:
        select_head(*picked)
    st.download_button("Download streaming scores (CSV)", scores.to_csv(index=False), file_name="streaming.csv",
                       mime="text/csv")
