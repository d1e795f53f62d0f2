"""Streamlit view of a dataset's shortcut audit: what simple cues alone give away.

It takes the :class:`~fakevoice.datasets.shortcut_findings.ShortcutAudit` a service returned and only
renders it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fakevoice.datasets.shortcut_findings import STRONG_BELOW, Separation, ShortcutAudit

NOTICE = {"strong": st.warning, "some": st.info, "none": st.success}


def comparison_table(audit: ShortcutAudit) -> pd.DataFrame:
    """One row per comparison (every machine clip, then each generator): clips, the EER of the
    cues together on held-out groups, and the strongest cue alone."""
    rows = [
        {
            "human vs": s.against,
            "human clips": s.bonafide_clips,
            "machine clips": s.spoof_clips,
            f"cues together, held-out {audit.held_out}s (EER %)": (
                None if s.combined_eer is None else round(100 * s.combined_eer, 1)
            ),
            "strongest cue alone": s.best_cue.label,
            "its EER %": round(100 * s.best_cue.eer, 1),
        }
        for s in [audit.pooled, *audit.generators.values()]
    ]
    return pd.DataFrame(rows).set_index("human vs")


def cue_table(separation: Separation) -> pd.DataFrame:
    """Every cue of one comparison: its EER alone and its medians in each class."""
    return pd.DataFrame(
        [
            {
                "cue": c.label,
                "EER alone %": round(100 * c.eer, 1),
                "median, human": round(c.bonafide_median, 4),
                "median, machine": round(c.spoof_median, 4),
                "in": c.unit,
            }
            for c in separation.cues
        ]
    ).set_index("cue")


def render(audit: ShortcutAudit, key: str) -> None:
    """The finding, the table of comparisons and, for the one chosen, every cue."""
    NOTICE[audit.severity](audit.summary())
    sampled = f" (a sample of {audit.sampled_from:,})" if audit.sampled_from > audit.clips else ""
    unreadable = f"; {audit.unreadable} could not be read" if audit.unreadable else ""
    st.caption(
        f"Measured on {audit.clips:,} clean clips{sampled}{unreadable}: length, silence before "
        "and after the speech, loudness, peak level, noise floor, bandwidth, digital silence, "
        "clipping and DC offset. Each cue alone is a score (50 % EER is chance); together they "
        f"feed a logistic regression fitted on some {audit.held_out}s and scored on the others. "
        f"Under {STRONG_BELOW:.0%} the cues give the answer away."
        + (f" Too few clips to judge alone: {', '.join(audit.too_few)}." if audit.too_few else "")
    )
    st.dataframe(comparison_table(audit), width="stretch", placeholder="—")
    comparisons = {s.against: s for s in [audit.pooled, *audit.generators.values()]}
    worst = audit.worst.against
    chosen = st.selectbox(
        "Every cue, human clips against",
        list(comparisons),
        index=list(comparisons).index(worst),
        key=f"shortcut_cues:{key}",
    )
    st.dataframe(cue_table(comparisons[chosen]), width="stretch", placeholder="—")
