"""The app's pages, in menu order. Each entry: (file under pages/, title, icon, url path)."""
from __future__ import annotations

PAGES: list[tuple[str, str, str, str]] = [
    ("pages/overview.py", "Model overview", ":material/grid_view:", "overview"),
    ("pages/head_view.py", "Head view", ":material/blur_on:", "head"),
    ("pages/token_view.py", "Token view", ":material/timeline:", "token"),
]


def page_file(url_path: str) -> str:
    """The file of the page with this url path (used to switch pages)."""
    return next(file for file, _, _, path in PAGES if path == url_path)
