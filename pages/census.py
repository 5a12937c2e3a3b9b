"""Head census: every head scored and labelled, as a clickable layer × head map and a table."""
import streamlit as st

from analysis.methods.census import LABELS, SCORE_HELP, THRESHOLD_HELP, census_summary, threshold_names
from analysis.runtime.models import model_title
from components.figures.grids import mark_heads
from components.caches.census import state_census
from components.figures.census import ENCODER_SCORES, SCORE_NAMES, head_hover_text, label_map, score_grid, \
    score_views
from components.widgets.head_picker import head_grid
from components.figures.grids import add_head_click_layer
from components.navigation import page_file
from components.panels.notes import notes_column
from components.page import page_context
from components.state import bind, update_state

HELP = """
**Where the scores come from.** Induction and duplicate-token scores are measured on a probe of
random tokens written twice (Olsson et al. 2022, *In-context learning and induction heads*): an
induction head attends from a token to the token that followed its earlier copy. The probe's length
and seed are below, so a link reproduces it. The same two scores on *your* text (columns
`induction_text`, `duplicate_text`) are defined only where tokens repeat. Everything else is
measured on your text: previous-token and self attention, first-token mass (attention sinks, Xiao
et al. 2023, *Efficient streaming language models with attention sinks*), mean attention distance and
mass within ±2 tokens (positional heads, Voita et al. 2019), normalised row entropy (broad heads) and,
for encoders, the mass on [CLS], [SEP] and punctuation (Clark et al. 2019, *What does BERT look at?*).
A **dormant** head parks nearly all attention on the first token and writes little: its output norm
is small next to the other heads of its layer (Guo et al. 2024, *Active-dormant attention heads*).
Which heads matter for a prediction is a different question: see Head importance (Michel et al. 2019).

**What MiniLM-L6 does with its attention.** Clark et al. found BERT-base heads parking attention on
[SEP]. The distilled all-MiniLM-L6-v2 parks it on **[CLS]** instead: on ordinary sentences 20–45% of
its 72 heads put more than half their mass on [CLS], while no head puts more than a fifth on [SEP] —
the no-op role moved to the first token, as with attention sinks in decoders.
"""

ctx = page_context()
info, state = ctx.handle.info, ctx.state
st.title("Head census")
with st.expander("What the scores mean, and the papers behind them"):
    st.markdown(HELP)
views = score_views(info.causal)
if state["census_score"] not in views:
    st.warning(f"{SCORE_NAMES[state['census_score']]} is measured only for encoders; showing the induction score.")
    update_state(census_score="induction")
controls = st.columns([2, 1, 1])
with controls[0]:
    bind(st.selectbox, "census_score", "Colour by", options=views, index=views.index(state["census_score"]),
         format_func=SCORE_NAMES.get, help="Each cell also shows the head's label. Hover a cell for all its scores.")
with controls[1]:
    bind(st.number_input, "probe_len", "Probe length", min_value=4, max_value=200, value=int(state["probe_len"]),
         help="Random tokens per repeat of the induction probe (the probe is this sequence written twice).")
with controls[2]:
    bind(st.number_input, "probe_seed", "Probe seed", min_value=0, max_value=2**31 - 1,
         value=int(state["probe_seed"]), help="Seed of the probe's random tokens.")
with st.expander("Label thresholds (the first rule that matches names the head)"):
    columns = st.columns(5)
    for index, name in enumerate(threshold_names()):
        with columns[index % 5]:
            bind(st.slider, f"th_{name}", name.replace("_", " "), min_value=0.0, max_value=1.0, step=0.05,
                 value=float(state[f"th_{name}"]), help=THRESHOLD_HELP[name])
census = state_census(state)
if info.causal:
    census = census.drop(columns=list(ENCODER_SCORES))
st.info(census_summary(census, model_title(info.name)))
census["notes"] = notes_column(info.name, list(census["head"]))

score = state["census_score"]
figure = label_map(census) if score == "label" else score_grid(census, score, SCORE_NAMES[score])
noted = census[census["notes"] != ""]
mark_heads(figure, set(zip(noted["layer"], noted["head_index"])))
picked = head_grid(add_head_click_layer(figure, info.n_layers, info.n_heads, head_hover_text(census),
                                        marker_size=14), key="census_grid")
if picked is not None:
    update_state(layer=picked[0], head=picked[1])
    st.switch_page(page_file("head_page"))
about = "" if score == "label" else f"Colour: {SCORE_NAMES[score]} — {SCORE_HELP[score]}. "
undefined = score != "label" and census[score].isna().any()
st.caption(about + ("Uncoloured cells: the score is not defined for that head on this input (the your-text scores need "
                    "repeated tokens). " if undefined else "") + "A cell without a label matches no labelling rule. "
           "Click a cell to open that head in the head view; ✎ marks heads with team notes (hover to read).")

st.subheader("All heads")
names = census["label"].replace("", "none")
choices = [label or "none" for label in LABELS]
wanted = [label for label in state["census_labels"].split(",") if label in choices]
bind(st.multiselect, "census_labels", "Only these labels", options=choices, default=wanted, transform=",".join,
     help="Empty shows every head. Click a column header to sort.")
shown = census[names.isin(wanted)] if wanted else census
st.dataframe(shown, hide_index=True, width="stretch", column_config={
    name: st.column_config.NumberColumn(SCORE_NAMES[name], format="%.3f", help=SCORE_HELP[name])
    for name in SCORE_HELP if name in shown})
downloads = st.columns(2)
downloads[0].download_button("Download CSV", census.to_csv(index=False), file_name=f"census-{info.name}.csv",
                             mime="text/csv")
downloads[1].download_button("Download JSON", census.to_json(orient="records", indent=1),
                             file_name=f"census-{info.name}.json", mime="application/json")
