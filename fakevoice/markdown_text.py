"""Text people chose (model, class, file and dataset names, notes), made safe in the Markdown
documents the workbench writes: verdict reports and model cards.

Outside a code span, ``[...](https://...)`` is a link and ``![](...)`` an image that a Markdown
viewer loads; inside one they are shown as typed. A backtick would end the span, a ``|`` a table
cell, a line break the list item, so those three are replaced.
"""

from __future__ import annotations


def inline(text: object) -> str:
    """``text`` safe inside a Markdown code span, in a table cell too."""
    return str(text).replace("`", "'").replace("|", "/").replace("\n", " ")


def code_span(text: object) -> str:
    """``text`` as a Markdown code span: shown as typed, never a link or an image."""
    return f"`{inline(text)}`"
