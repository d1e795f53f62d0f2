"""Text that people chose (display names, model, class and run names) shown as the characters
they typed, never as Markdown.

Streamlit renders Markdown in titles, captions, alerts, expander labels and ``st.markdown``: a
display name ``[Your session ended, sign in again](https://...)`` on a public profile, or a class
name ``![](https://...)`` of a shared model in someone else's verdict card, would become a link
or an image that loads from another server.
"""

from __future__ import annotations

import re

# ASCII punctuation that Markdown, GitHub's extensions, Streamlit's directives (:red[...],
# :material/...:) and its LaTeX ($...$) give a meaning; CommonMark shows any of them
# backslash-escaped as the character itself.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&/])")


def plain(text: object) -> str:
    """``text`` with every Markdown character escaped: shown exactly as written."""
    return _MARKUP.sub(r"\\\1", str(text))
