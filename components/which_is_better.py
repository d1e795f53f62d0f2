"""Streamlit view of paired EER comparisons: for each pair of models (or runs) scored on the same
items, their EER difference with its bootstrap interval, and whether it tells them apart.

It takes the :class:`~fakevoice.services.paired_tests.PairedEer` a service returned and only
renders it.
"""

from __future__ import annotations

import streamlit as st

from fakevoice.metrics.bootstrap import difference_verdict
from fakevoice.services.paired_tests import PairedEer

EXPLANATION = (
    "how the EER difference would vary on another draw of speech like this (the items both "
    "scored, drawn again 1,000 times {unit} at a time). When its 95 % interval holds 0, the two "
    "cannot be told apart on these items."
)
UNIT_WORDS = {"speakers": "a whole speaker", "utterances": "a whole utterance"}


def render(pairs: list[PairedEer], what: str) -> None:
    """The table of ``pairs`` under a "Which is better?" heading; ``what`` names the pairs
    ("models", "runs") in the caption."""
    if not pairs:
        return
    st.markdown("**Which is better?**")
    unit = UNIT_WORDS.get(pairs[0].difference.unit, "a whole utterance")
    st.caption(f"Each pair of {what}: {EXPLANATION.format(unit=unit)}")
    st.dataframe(
        [
            {
                "pair": f"{p.first} - {p.second}",
                "items": p.items,
                "EER difference (points)": round(100 * p.difference.difference, 2),
                "95 % interval": f"{100 * p.difference.low:+.1f} to {100 * p.difference.high:+.1f}",
                "first lower in": f"{p.difference.first_lower:.0%} of draws",
                "verdict": difference_verdict(p.first, p.second, p.difference.to_dict()),
            }
            for p in pairs
        ],
        hide_index=True,
        placeholder="—",
    )
