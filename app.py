"""Attention Atlas: explore the attention heads of transformer language models in the browser."""
from __future__ import annotations

import streamlit as st

from components.preload import preload_modules

preload_modules()  # the first sessions of a fresh server must not import the backend from several threads at once

from components.auth import sign_in_gate  # noqa: E402
from components.navigation import PAGES, page_url_path  # noqa: E402
from components.panels.job_panel import resume_unfinished_jobs  # noqa: E402
from components.panels.sidebar import render_sidebar  # noqa: E402
from components.state import enter_page  # noqa: E402


st.set_page_config(page_title="Attention Atlas", page_icon=":material/hub:", layout="wide")
resume_unfinished_jobs()
sign_in_gate()
navigation = st.navigation([*(st.Page(file, title=title, icon=icon, url_path=page_url_path(file) if index else "",
                                      default=index == 0)
                              for index, (file, title, icon, _) in enumerate(PAGES)),
                            st.Page(PAGES[0][0], title=PAGES[0][1], url_path=page_url_path(PAGES[0][0]),
                                    visibility="hidden")],  # the default page is served at /; /overview shows it too
                          expanded=True)  # every page in the menu: no 'View more' fold past the tenth
enter_page(navigation.url_path)
render_sidebar()
navigation.run()
