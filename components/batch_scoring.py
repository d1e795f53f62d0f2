"""Batch scoring on the Evaluate page: several files or a zip, one model, a table and a CSV
(:func:`fakevoice.batch.read_batch` and :func:`~fakevoice.batch.score_batch`; every verdict goes
into the history)."""

from __future__ import annotations

import streamlit as st

from components import AUDIO_HELP
from fakevoice import batch
from fakevoice.errors import FakeVoiceError
from fakevoice.store.records import Actor, ModelRecord


def render(actor: Actor, model: ModelRecord, threshold: float) -> None:
    """Files or a zip of them scored with one model: a row per file (its error when it could
    not be judged), the count of each, and the CSV."""
    files = st.file_uploader(
        "Audio files, or one zip of them",
        accept_multiple_files=True,
        key="eval_batch",
        help=AUDIO_HELP + " Zips are checked for size, count and odd paths.",
    )
    if st.button("Score all", key="eval_batch_run", disabled=not files):
        try:
            entries = batch.read_batch([(f.name, f.getvalue()) for f in files or []])
            results = batch.score_batch(
                actor, model.id, entries, threshold=threshold, origin="page"
            )
        except FakeVoiceError as exc:
            st.error(str(exc))
        else:
            st.session_state["eval_batch_results"] = (model.name, results)
    stored = st.session_state.get("eval_batch_results")
    if stored is None:
        st.info("Choose files (or a zip) and press Score all.")
        return
    name, results = stored
    failed = sum(r.error is not None for r in results)
    scored = len(results) - failed
    summary = f"{scored} of {len(results)} file(s) scored with {name}"
    if failed:
        summary += f"; {failed} could not be judged (the error column says why)"
    st.caption(summary + ".")
    st.dataframe(
        batch.results_frame(results),
        hide_index=True,
        column_config={
            "name": "file",
            "p_human": st.column_config.NumberColumn("P(human)", format="%.3f"),
            "duration": st.column_config.NumberColumn("seconds", format="%.2f"),
            "sample_rate": st.column_config.NumberColumn("sample rate (Hz)", format="%d"),
            "file_sha256": "SHA-256",
            "analysis_id": st.column_config.NumberColumn("verdict #", format="%d"),
            "error_code": None,  # the CSV's and the API's; the error column says it in words
        },
        placeholder="—",
    )
    st.download_button(
        "Batch verdicts (CSV)",
        batch.results_csv(results),
        file_name="verdicts.csv",
        mime="text/csv",
        key="eval_batch_csv",
        on_click="ignore",
        icon=":material/download:",
        help="one row per file: its verdict and probabilities, or why it could not be scored",
    )
