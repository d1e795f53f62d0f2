"""Streamlit views of a built dataset: header metrics, count tables and charts, side-by-side
spectrograms with audio players, feature spec and attribution.

Each function takes what :mod:`fakevoice.services` returned and only renders it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fakevoice.services import Comparison, DatasetOverview, noise_label

PANELS_PER_ROW = 4


def format_hours(hours: float) -> str:
    """``0.05`` -> ``"3.0 min"``, ``2.5`` -> ``"2.50 h"``."""
    return f"{hours:.2f} h" if hours >= 1.0 else f"{hours * 60:.1f} min"


def render_metrics(overview: DatasetOverview) -> None:
    """One row of header metrics: items, speakers, classes, noise levels, audio duration."""
    columns = st.columns(5)
    columns[0].metric("Items", f"{overview.items:,}", help="spectrogram images (manifest rows)")
    columns[1].metric("Speakers", overview.speakers)
    columns[2].metric("Classes", len(overview.classes), help=", ".join(overview.classes))
    columns[3].metric(
        "Noise levels",
        len(overview.noise_levels),
        help=", ".join(noise_label(n) for n in overview.noise_levels),
    )
    columns[4].metric(
        "Audio",
        format_hours(overview.audio_hours),
        help=f"{overview.clips:,} distinct clips; noise levels share a clip",
    )


def _counts_tab(counts: pd.DataFrame, chart_title: str) -> None:
    left, right = st.columns([2, 3])
    count = st.column_config.NumberColumn(format="localized")
    left.dataframe(counts, width="stretch", column_config={"items": count, "clips": count})
    # The bars keep the table's order (noise levels clean first, then by falling SNR), not
    # the chart's alphabetical one.
    right.bar_chart(counts["items"], y_label=chart_title, horizontal=len(counts) > 8, sort=False)


def render_counts(overview: DatasetOverview) -> None:
    """Items and clips per noise level, speaker and class, as tables and bar charts."""
    by_noise = overview.by_noise.rename(index=noise_label)
    tabs = st.tabs(["Per noise level", "Per speaker", "Per class"])
    with tabs[0]:
        _counts_tab(by_noise, "items")
    with tabs[1]:
        _counts_tab(overview.by_speaker, "items")
    with tabs[2]:
        _counts_tab(overview.by_class, "items")


def render_comparison(comparison: Comparison) -> None:
    """The utterance's spectrograms side by side (bonafide first), each with an audio player."""
    st.caption(
        f"Utterance **{comparison.utterance}** · speaker {comparison.speaker} · "
        f"language {comparison.language or '?'} · {noise_label(comparison.noise)}"
    )
    panels = comparison.panels
    for start in range(0, len(panels), PANELS_PER_ROW):
        columns = st.columns(PANELS_PER_ROW)
        for column, panel in zip(columns, panels[start : start + PANELS_PER_ROW], strict=False):
            with column:
                title = "human (bonafide)" if panel.label == "bonafide" else panel.label
                st.markdown(f"**{title}**")
                st.image(panel.image_png, caption=f"{panel.item} · {panel.duration:.2f} s")
                st.audio(panel.audio_wav, format="audio/wav")


def render_details(overview: DatasetOverview) -> None:
    """Feature spec, dataset metadata and the ATTRIBUTION text, folded away."""
    with st.expander("Feature spec, sources and attribution"):
        st.markdown("**Feature spec** (how the images were rendered)")
        st.json(overview.feature_spec, expanded=True)
        st.markdown("**Dataset**")
        st.json(overview.info, expanded=False)
        st.markdown("**Attribution**")
        if overview.attribution:
            st.text(overview.attribution)
        else:
            st.caption("This dataset has no ATTRIBUTION file.")
