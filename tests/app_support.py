"""Helpers for page tests in real Streamlit (AppTest): open the app, read its messages, wait for a job."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def run_app(page: str | None = None, **params: str) -> AppTest:
    """Open the app with query parameters, directly on ``page`` if given, and run it."""
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in params.items():
        app.query_params[key] = value
    if page:
        app.switch_page(page)
    return app.run()


def messages(app: AppTest) -> str:
    """All error and warning texts of the last run."""
    return " ".join(e.value for e in list(app.error) + list(app.warning))


def chart(app: AppTest, index: int) -> dict:
    """The ``index``-th Plotly chart of the last run, as its figure JSON."""
    return json.loads(app.get("plotly_chart")[index].proto.spec)


def plotly_values(encoded) -> np.ndarray:
    """A Plotly array from a chart's JSON: a plain list or Plotly's base64 typed array (with its shape)."""
    if isinstance(encoded, dict):
        values = np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=encoded["dtype"])
        return values.reshape([int(n) for n in str(encoded["shape"]).split(",")]) if "shape" in encoded else values
    return np.asarray(encoded)


JOB_TIMEOUT = 400.0


def rerun_until(app, done, timeout: float = JOB_TIMEOUT):
    """Re-run the page every second until ``done(app)`` (the job ended) or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not done(app):
        assert not app.exception, app.exception
        assert time.monotonic() < deadline, f"the job did not finish: {[p.proto.text for p in app.get('progress')]}"
        time.sleep(1.0)
        app.run()
    return app
