"""Every page runs through ``app.py``: sign-in from the cookie, the sidebar, the pages a user sees.

Streamlit routes by the ``pages/`` folder until the entry script has called ``st.navigation``
once since the server started. A link to a page opened first after a restart
(``/train?run=12``, a bookmark, a link in a mail) therefore ran ``pages/train.py`` by itself:
the sidebar listed the folder's file names and nobody was signed in from their cookie, so a
signed-in user was asked to sign in. A page that finds itself run so (:func:`through_app`) goes
through ``app.py`` instead, which sends the visitor on to it with the link's query (:func:`run`).
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from streamlit.navigation.page import StreamlitPage

ENTRY = "app.py"
PAGES_FOLDER = "pages"
_WANTED = "_navigation_wanted_page"
_navigation_started = False
"""Whether ``app.py`` has called ``st.navigation`` in this server process: from then on
Streamlit routes every session's pages through it (its own switch is process-wide, too)."""


def run(pages: Sequence[StreamlitPage]) -> None:
    """``app.py``'s last step: the page the URL names, or the one a page run by itself asked
    for (:func:`through_app`), with its query."""
    global _navigation_started
    chosen = st.navigation(list(pages))
    _navigation_started = True
    wanted = st.session_state.pop(_WANTED, None)
    if wanted is not None:
        page, query = wanted
        st.switch_page(page, query_params=query)
    chosen.run()


def through_app(page_file: str) -> None:
    """A page's last step before its content: nothing once ``app.py`` routes the pages; before
    (the page was run by itself), go through ``app.py``, which comes back to
    ``pages/<page_file>`` with this URL's query.

    Args:
        page_file: the page's file name, e.g. ``"train.py"``.
    """
    if _navigation_started:
        return
    st.session_state[_WANTED] = (f"{PAGES_FOLDER}/{page_file}", st.query_params.to_dict())
    st.switch_page(ENTRY)
