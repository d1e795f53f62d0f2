"""Streamlit entry point: page config, navigation, and the selected page.

Run with ``streamlit run app.py``. Pages are thin views over :mod:`fakevoice.services`; adding a
page is one line in :data:`PAGES`.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Fake Voice Workbench", page_icon="🎙️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
]

st.navigation(PAGES).run()
