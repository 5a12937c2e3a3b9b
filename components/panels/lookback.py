"""The lab's lookback section: how much each head looks at the prompt while the model generates (Lookback Lens)."""
from __future__ import annotations

import streamlit as st

from analysis.methods.lookback import lookback_table
from analysis.runtime.interventions import HeadIntervention, MissingBaseError
from components.caches.long_context import cached_lookback
from components.figures.lookback import lookback_figure
from components.state import bind


def lookback_panel(state: dict, selection: tuple[HeadIntervention, ...]) -> None:
    """A toggle; when on, the heads × steps lookback heatmap of the greedy generation (with the lab's ``selection`` applied),
    the per-head means and a CSV."""
    bind(st.toggle, "lab_lookback", "Lookback ratio during the generation", value=state["lab_lookback"],
         help="Chuang et al. 2024 (Lookback Lens): per head and generated step, the mean attention on the prompt's "
              "tokens over the mean on the prompt's plus on the generated tokens' (1 at the first step).")
    if not state["lab_lookback"]:
        return
    try:
        tokens, ratios = cached_lookback(state["model"], state["text"], int(state["max_tokens"]), selection,
                                         int(state["gen_tokens"]))
    except MissingBaseError as error:
        st.info(f"{error} The lookback view runs the selection without a second text.")
        return
    st.plotly_chart(lookback_figure(ratios, tokens), key="lab_lookback_map")
    table = lookback_table(ratios, tokens)
    lowest = table.nsmallest(5, "mean")
    st.caption("Heads that look least at the prompt: " + ", ".join(
        f"{head} ({mean:.2f})" for head, mean in zip(lowest["head"], lowest["mean"])))
    st.download_button("Download lookback ratios (CSV)", table.to_csv(index=False), file_name="lookback.csv",
                       mime="text/csv", key="lab_lookback_csv")
