"""Streamlit entry point: page config, navigation, and the selected page.

Run with ``streamlit run app.py``. Pages are thin views over :mod:`fakevoice.services`; adding a
page is one line in :data:`PAGES` (and each page's last lines go through
:func:`components.navigation.through_app`). Before the page, :func:`components.auth.start` signs a
returning visitor in from their cookie; pages that need a user call ``require_actor()``.
"""

from __future__ import annotations

import streamlit as st

from components import auth, navigation

st.set_page_config(page_title="Fake Voice Workbench", page_icon="🎙️", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/graphic_eq:"),
    st.Page("pages/profile.py", title="Profile", icon=":material/person:"),
]

# The cookie component of a sign-in or sign-out renders on one run only; inside one container it
# never moves the page below it, so the page's elements are updated in place, not drawn twice.
with st.container():
    auth.start()
auth.sidebar_status()
navigation.run(PAGES)
