"""Fake Voice Workbench core: audio in, features, datasets, models, training, verdicts.

This package never imports streamlit; pages, the API and the CLI call into it.
"""

from __future__ import annotations

__version__ = "0.1.0"
