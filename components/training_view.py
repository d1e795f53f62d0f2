"""Streamlit views of a training run: loss curves, per-epoch table, which epoch the model is
from, downloads and the link to evaluate the model; its report's figures and charts (headline
metrics, confusion matrix, ROC and DET, reliability, EER per generator) are
:mod:`components.report_view`'s, which a test on a dataset shows too.

Charts are Altair (Vega-Lite) so the live panel redraws cheaply; each function takes what
:mod:`fakevoice.services` returned and only renders it. ``key_prefix`` keeps widget keys unique when
a page shows several runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from components import model_downloads, report_view
from fakevoice import services
from fakevoice.services import model_files, results
from fakevoice.services.results import RunResults
from fakevoice.store.records import Actor

DOWNLOADS: tuple[tuple[str, str, str, str], ...] = (
    # (file name, button label, mime type, tip)
    (
        "model.pkl",
        model_downloads.EXPORT_LABEL,
        model_files.EXPORT_MEDIA_TYPE,
        model_downloads.EXPORT_HELP,
    ),
    (
        "history.csv",
        "Epoch history (CSV)",
        "text/csv",
        "one row per epoch: losses, accuracy, F1, EER",
    ),
    ("loss_curve.png", "Loss curve (PNG)", "image/png", "train and validation loss per epoch"),
    ("confusion.png", "Confusion matrix (PNG)", "image/png", "validation confusion matrix"),
)


# --- loss curves ---------------------------------------------------------------------------------


def loss_chart(batches: pd.DataFrame, history: pd.DataFrame) -> alt.LayerChart:
    """Train loss per batch, validation loss per epoch, and a vertical rule at each epoch's end."""
    frame = results.loss_curve_points(batches, history)
    x = alt.X("x:Q", title="epoch", scale=alt.Scale(domainMin=0))
    y = alt.Y("loss:Q", title="cross-entropy loss")
    colour = alt.Color("series:N", title=None, legend=alt.Legend(orient="top"))
    lines = alt.Chart(frame).mark_line(strokeWidth=1.5).encode(x, y, colour)
    points = (
        alt.Chart(frame[frame["series"] == results.VALID_SERIES])
        .mark_point(filled=True, size=50)
        .encode(x, y, colour, tooltip=[alt.Tooltip("x:Q", title="epoch"), "loss:Q"])
    )
    ends = pd.DataFrame({"x": (history["epoch"] + 1.0) if not history.empty else []})
    rules = alt.Chart(ends).mark_rule(strokeDash=[3, 3], opacity=0.4).encode(x="x:Q")
    return alt.layer(rules, lines, points).properties(height=300)


def render_loss_chart(batches: pd.DataFrame, history: pd.DataFrame) -> None:
    if batches.empty and history.empty:
        st.caption("The loss curves appear with the first training batches.")
        return
    st.altair_chart(loss_chart(batches, history), width="stretch")


# --- tables and headline -------------------------------------------------------------------------


def render_epoch_table(history: pd.DataFrame) -> None:
    """The per-epoch figures, epochs counted from 1."""
    if history.empty:
        st.caption("No epoch has finished yet.")
        return
    st.dataframe(
        history.assign(epoch=history["epoch"] + 1),
        hide_index=True,
        width="stretch",
        column_config={
            "epoch": st.column_config.NumberColumn("epoch"),
            "train_loss": st.column_config.NumberColumn("train loss", format="%.4f"),
            "valid_loss": st.column_config.NumberColumn("valid loss", format="%.4f"),
            "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
            "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
            "eer": st.column_config.NumberColumn("EER", format="percent"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.1f"),
        },
        placeholder="—",
    )


def render_headline(result: RunResults) -> None:
    """Accuracy, macro F1, EER and AUC of the final model on the validation split."""
    report_view.render_metrics(result.metrics)
    if result.run.mlflow_run_id:
        st.caption(f"MLflow run `{result.run.mlflow_run_id}`")


def model_epoch_words(result: RunResults) -> str | None:
    """Which epoch the run's saved model is from, e.g. "The stored model is from epoch 3 of 5
    (lowest validation EER)." (epochs counted from 1, as the epoch table counts them): under
    save-best the headline figures are that epoch's, not the last row's. None while the run has
    saved no model."""
    if result.model_epoch is None:
        return None
    why = "lowest validation EER" if result.saved_best else "the last"
    return (
        f"The stored model is from epoch {result.model_epoch + 1} of {len(result.history)} ({why})."
    )


# --- downloads and links -------------------------------------------------------------------------


def file_stem(text: str, limit: int = 80, fallback: str = "run") -> str:
    """A download's file-name stem from any text: letters, digits, '-' and '_' (others become
    '_'), at most ``limit`` characters, ``fallback`` when nothing is left."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:limit] or fallback


def percent_columns(columns: Iterable[str], fractions: set[str]) -> dict[str, Any]:
    """``st.dataframe`` column settings showing ``fractions`` and every ``eer@...`` column as
    percentages, titled for people (``eer@snr_0db`` -> "EER 0 dB SNR", ``best_eer`` ->
    "best eer", ``eer`` -> "EER")."""
    return {
        c: st.column_config.NumberColumn(_column_title(c), format="percent")
        for c in columns
        if c in fractions or c.startswith("eer@")
    }


def _column_title(column: str) -> str:
    if column.startswith("eer@"):
        return f"EER {services.noise_label(column.removeprefix('eer@'))}"
    return {"eer": "EER"}.get(column, column.replace("_", " "))


def render_downloads(actor: Actor, result: RunResults, key_prefix: str = "train") -> None:
    """Download buttons for the run's files that exist (model, safe bundle, history, plots) and
    its stored model's card."""
    run = result.run
    stem = file_stem(run.name, limit=60)
    # One row that wraps, each button as wide as its label: equal columns cut the labels
    # ("fastai expo...", "Confusion mat...") in the page's width.
    row = st.container(horizontal=True, key=f"{key_prefix}_downloads")
    # The data are callables: Streamlit reads a file only when its button is clicked, so a large
    # model is not loaded on every rerun. A download changes nothing, so it does not rerun the page
    # either (on_click="ignore"): a rerun would give every button a new file id while the browser
    # may still click an old one ("Deferred file ... not found").
    for name, label, mime, tip in DOWNLOADS:
        row.download_button(
            label,
            data=lambda name=name: results.artefact_bytes(actor, run.id, name),
            file_name=f"{stem}-{name}",
            mime=mime,
            key=f"{key_prefix}_download_{name}",
            help=tip,
            disabled=name not in result.files,
            icon=":material/download:",
            on_click="ignore",
        )
    row.download_button(
        model_downloads.BUNDLE_LABEL,
        data=lambda: results.bundle_zip(actor, run.id),
        file_name=f"{stem}-bundle.zip",
        mime=model_files.BUNDLE_MEDIA_TYPE,
        key=f"{key_prefix}_download_bundle",
        help=model_downloads.BUNDLE_HELP,
        disabled=not result.has_bundle,
        icon=":material/download:",
        on_click="ignore",
    )
    model_id = result.model_id  # the card is the stored model's
    card = (lambda: model_files.model_card(actor, model_id).data) if model_id is not None else b""
    row.download_button(
        model_downloads.CARD_LABEL,
        data=card,
        file_name=f"{stem}-card.md",
        mime=model_files.CARD_MEDIA_TYPE,
        key=f"{key_prefix}_download_card",
        help=model_downloads.CARD_HELP,
        disabled=model_id is None,
        icon=":material/download:",
        on_click="ignore",
    )


def render_evaluate_link(model_id: int | None) -> None:
    """A link to the Evaluate page with this model chosen (``?model=<id>``)."""
    if model_id is None:
        return
    try:
        st.page_link(
            "pages/evaluate.py",
            label="Evaluate this model",
            icon=":material/fact_check:",
            query_params={"model": str(model_id)},
        )
    except StreamlitAPIException:  # the Evaluate page is not in this app's navigation
        st.markdown(f"[Evaluate this model](evaluate?model={model_id})")


def render_results(actor: Actor, result: RunResults, key_prefix: str = "train") -> None:
    """The finished run: headline metrics, curves, confusion matrix, ROC, table and downloads."""
    if result.metrics:
        render_headline(result)
    if (saved := model_epoch_words(result)) is not None:
        st.caption(saved)
    render_loss_chart(result.batches, result.history)
    if not result.metrics and result.run.status != "succeeded":
        # A run that ended before its final evaluation wrote no results: say that, not why a
        # chart would be empty.
        st.caption(
            "This run ended before its final evaluation, so it wrote no confusion matrix, ROC "
            "or metrics; its epochs so far are below."
        )
    else:
        report_view.render_confusion_and_roc(result.confusion, result.roc, "validation split")
    report_view.render_reliability(result.metrics)
    st.markdown("**Per epoch**")
    render_epoch_table(result.history)
    report_view.render_per_class(result.metrics)
    audit = services.kept_shortcuts(result.run.dataset or "", actor=actor)
    report_view.render_generator_eer(result.metrics, audit.generator_eers() if audit else None)
    render_downloads(actor, result, key_prefix)
    render_evaluate_link(result.model_id)
