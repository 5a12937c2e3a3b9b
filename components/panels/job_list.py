"""The newest jobs of the team, each with its status and a link that opens it."""
from __future__ import annotations

import datetime

import pandas as pd
import streamlit as st

from analysis.jobs.kinds import KINDS
from components.panels.job_panel import job_link, job_store
from components.share_links import DATABASE_ERRORS


def recent_jobs(limit: int = 10) -> None:
    """A table of the newest jobs (any session's), with links."""
    try:
        records = job_store().recent(limit)
    except DATABASE_ERRORS:
        st.caption("The job list is unavailable right now (the database cannot be reached).")
        return
    if not records:
        return
    st.subheader("Recent jobs")
    st.dataframe(pd.DataFrame({
        "job": [job_link(record.id) for record in records],
        "computes": [KINDS[record.kind].title if record.kind in KINDS else record.kind for record in records],
        "dataset": [record.params["dataset"]["name"] for record in records],
        "rows": [int(record.total) for record in records],
        "model": [record.model for record in records],
        "started by": [record.owner for record in records],
        "status": [record.status for record in records],
        "progress": [record.fraction for record in records],
        "started": [datetime.datetime.fromtimestamp(record.created_at).strftime("%Y-%m-%d %H:%M")
                    for record in records],
    }), hide_index=True, width="stretch", column_config={
        "job": st.column_config.LinkColumn("job", display_text=r"job=(.*)$"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    })
