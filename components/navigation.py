"""The app's pages, in menu order. Each entry: (file under pages/, title, icon, short key for ``page_file``).

A page's URL path is its file name without ``.py`` (``/head_view``); the first page is the default, served at
``/`` and, as a page hidden from the menu, at its own path too. Streamlit also knows the files
under ``pages/`` by that name in its older multipage mode (used by AppTest, and by a fresh server
whose first request is a deep link), so both modes resolve a link to the same page.
"""
from __future__ import annotations

from pathlib import Path

PAGES: list[tuple[str, str, str, str]] = [
    ("pages/overview.py", "Model overview", ":material/grid_view:", "overview"),
    ("pages/head_view.py", "Head view", ":material/blur_on:", "head"),
    ("pages/token_view.py", "Token view", ":material/timeline:", "token"),
    ("pages/census.py", "Head census", ":material/category:", "census"),
    ("pages/head.py", "Head page", ":material/badge:", "head_page"),
    ("pages/composition.py", "Composition", ":material/device_hub:", "composition"),
    ("pages/importance.py", "Head importance", ":material/leaderboard:", "importance"),
    ("pages/ablation_lab.py", "Ablation lab", ":material/science:", "lab"),
    ("pages/patching.py", "Activation patching", ":material/swap_horiz:", "patching"),
    ("pages/circuits.py", "Circuits", ":material/hub:", "circuits"),
    ("pages/flow.py", "Rollout and flow", ":material/account_tree:", "flow"),
    ("pages/head_writes.py", "What a head writes", ":material/edit_note:", "writes"),
    ("pages/long_context.py", "Long contexts", ":material/straighten:", "long_context"),
    ("pages/compare.py", "Compare", ":material/compare:", "compare"),
    ("pages/datasets.py", "Datasets and jobs", ":material/dataset:", "datasets"),
]


def page_url_path(file: str) -> str:
    """The URL path of a page file: its name without the extension."""
    return Path(file).stem


def page_file(url_path: str) -> str:
    """The file of the page with this url path (used to switch pages)."""
    return next(file for file, _, _, path in PAGES if path == url_path)
