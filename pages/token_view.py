"""Token view: follow one token through every layer and head."""
import streamlit as st

from components.figures.attention import token_strip_figure
from components.caches.models import cached_token_attention
from components.page import page_context
from components.state import bind

ctx = page_context()
trace, state = ctx.trace, ctx.state
st.title("Token view")
tokens = trace.display_tokens
looks_back = ctx.handle.info.causal and state["token_direction"] == "to"  # only the token and later ones look at it
default = trace.n_tokens // 2 if looks_back else trace.n_tokens - 1  # a middle token has later ones to look at it
position = state["token"] if state["token"] >= 0 else default
left, middle, right = st.columns([2, 1, 1])
with left:
    bind(st.selectbox, "token", "Token", options=list(range(trace.n_tokens)), index=position,
         format_func=lambda i: f"{i}: {tokens[i]}", derived=state["token"] < 0)
with middle:
    bind(st.radio, "token_direction", "Show", options=["from", "to"], horizontal=True,
         index=0 if state["token_direction"] == "from" else 1,
         format_func=lambda d: "where it looks" if d == "from" else "who looks at it")
with right:
    bind(st.toggle, "token_per_head", "Every head", value=state["token_per_head"],
         help="Off: one row per layer (mean over heads). On: one row per head, grouped by layer.")
if looks_back:
    st.caption("A causal model's token is looked at only by itself and the tokens after it: the columns before it "
               "stay empty" + (", and the last token's chart is one column." if position == trace.n_tokens - 1
                               else "."))
weights = cached_token_attention(state["model"], state["text"], int(state["max_tokens"]), position,
                                 state["token_direction"])
st.plotly_chart(token_strip_figure(weights, tokens, position, state["token_direction"], state["token_per_head"]),
                key="token_strip")
