"""Fake Voice Workbench core: audio in, features, datasets, models, training, verdicts.

This package never imports streamlit; pages, the API and the CLI call into it.
"""

from __future__ import annotations

import warnings

# Warnings about our dependencies' own code, which users can do nothing about, kept off every
# command's output: fastai decorates a few layers with torch.jit.script when it is imported, and
# pyworld imports pkg_resources.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)
warnings.filterwarnings(
    "ignore", message=r"pkg_resources is deprecated as an API", category=UserWarning
)

__version__ = "0.1.0"
