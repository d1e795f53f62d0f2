"""Home page: what the workbench does, how to start, and the datasets already built."""

from __future__ import annotations

import streamlit as st

from fakevoice import services
from fakevoice.errors import FakeVoiceError

INTRO = """
Is this voice a person or a machine? The workbench helps you find out:

1. **Build a dataset**: real speakers plus machine-made copies of what they said (vocoders and
   text-to-speech voices), at several noise levels, turned into spectrogram images.
2. **Train a detector** on those images (CNNs) or on the raw waveforms (AASIST).
3. **Judge it**: accuracy, confusion matrix, ROC and equal error rate.
4. **Ask for a verdict** on a recording: *human*, *machine-generated* or *inconclusive*.
"""

START = """
**Start here**

1. Build the demo dataset (a few minutes on a laptop; nothing is downloaded) with
   `fakevoice dataset build-demo`, or run `make run`, which builds it when missing and starts
   this app.
2. Open **Datasets** to see what it holds and listen to a human clip next to its machine copies.
"""


def _datasets_present() -> None:
    st.subheader("Datasets")
    try:
        summaries = services.list_datasets()
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if not summaries:
        st.info("No dataset is built yet: run `fakevoice dataset build-demo` first.")
        return
    st.dataframe(
        [{"dataset": s.name, "items": s.items, "created": s.created} for s in summaries],
        hide_index=True,
    )
    st.page_link("pages/datasets.py", label="Open Datasets", icon=":material/dataset:")


def main() -> None:
    st.title("Fake Voice Workbench")
    st.markdown(INTRO)
    st.markdown(START)
    _datasets_present()


main()
