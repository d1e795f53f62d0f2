"""Why the model decided as it did on a clip (the Evaluate page): where in the explained window,
and in which frequency bands, its decision is most sensitive to the audio
(:mod:`fakevoice.explain`)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from fakevoice.explain import Explanation, overlay

CAVEAT = (
    "This shows where the model looks, not proof of how the clip was made: a detector can also "
    "rely on cues that are not synthesis artefacts (silence, the channel, loudness)."
)


def kept_heatmap_chart(explanation: Explanation) -> alt.Chart:
    """A kept heatmap's cells over the window's time and the model's frequency rows."""
    heat = explanation.heatmap
    assert heat is not None
    rows, columns = heat.shape
    seconds = (explanation.end - explanation.start) / columns
    cells = pd.DataFrame(
        [
            {
                "time (s)": round(explanation.start + (c + 0.5) * seconds, 3),
                "row": rows - 1 - r,  # row 0 of the image is the highest frequency
                "sensitivity": float(heat[r, c]),
            }
            for r in range(rows)
            for c in range(columns)
        ]
    )
    return (
        alt.Chart(cells)
        .mark_rect()
        .encode(
            x=alt.X("time (s):O", axis=alt.Axis(labelOverlap=True)),
            y=alt.Y("row:O", sort="descending", axis=None, title="frequency (low at the bottom)"),
            color=alt.Color("sensitivity:Q", scale=alt.Scale(scheme="reds"), legend=None),
            tooltip=["time (s)", "sensitivity"],
        )
    )


def render(explanation: Explanation, model_name: str) -> None:
    """The heatmap over the spectrogram (image models), and the shares per band and over time."""
    e = explanation
    st.caption(
        f"Window {e.start:.2f}–{e.end:.2f} s, P(human) {e.p_human:.3f} in it. {e.method}. {CAVEAT}"
    )
    picture = overlay(e)
    if picture is not None:
        left, right = st.columns(2)
        left.image(
            picture,
            caption=f"Where {model_name}'s decision is most sensitive (red); low frequencies at "
            "the bottom",
            width="stretch",
        )
    elif e.heatmap is not None:  # kept with a verdict: the cells, without the spectrogram
        left, right = st.columns(2)
        with left:
            st.altair_chart(kept_heatmap_chart(e), width="stretch")
            st.caption(
                f"Where {model_name}'s decision was most sensitive (darker), as kept with the "
                f"verdict ({e.heatmap.shape[0]} x {e.heatmap.shape[1]} cells over the "
                "spectrogram; low frequencies at the bottom, on the model's frequency scale)."
            )
    else:
        right = st.container()
    bands = pd.DataFrame(
        {
            "band": [b.label() for b in e.bands],
            "share (%)": [round(100 * b.share, 1) for b in e.bands],
        }
    )
    with right:
        st.markdown("**Frequency bands**")
        st.altair_chart(
            alt.Chart(bands)
            .mark_bar()
            .encode(
                x=alt.X("share (%):Q"),
                y=alt.Y("band:N", sort=list(bands["band"])[::-1], title=None),
                tooltip=["band", "share (%)"],
            ),
            width="stretch",
        )
    seconds = (e.end - e.start) / len(e.segments)
    over_time = pd.DataFrame(
        {
            "time (s)": [round(e.start + (i + 0.5) * seconds, 2) for i in range(len(e.segments))],
            "share (%)": [round(100 * s, 1) for s in e.segments],
        }
    )
    st.markdown("**Over the window's time**")
    st.bar_chart(over_time, x="time (s)", y="share (%)", height=180)
