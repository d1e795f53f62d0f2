"""A model picker with the chosen model's files to download (Profile: one's own models, and a
user's public models for everyone; Home: the public models, for visitors too).

The bytes are read only when a button is clicked (Streamlit's deferred download), and are checked
against the hashes the store kept (:mod:`fakevoice.services.model_files`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

from fakevoice.services import model_files
from fakevoice.store.records import Actor, ModelRecord

# The labels and tips of a model's files, wherever they are offered (here, and a run's row of
# downloads on Train and Profile: components/training_view.py).
BUNDLE_LABEL = "Safe bundle (zip)"
CARD_LABEL = "Model card (Markdown)"
EXPORT_LABEL = "fastai export (.pkl)"
BUNDLE_HELP = (
    "model.safetensors + manifest.json: the weights, and everything needed to use them "
    "(architecture, classes, spectrogram settings, sample rate, window, calibration), and "
    "validation.json: its validation figures, signed by this server. Upload it on the Evaluate "
    "page of any workbench, or load it with safetensors."
)
CARD_HELP = (
    "What the model is, what it was trained and checked on, its EER per generator and noise "
    "level, where it is weak, and its recipe: the page to share with it (Markdown)."
)
EXPORT_HELP = (
    "fastai's Learner.export, for load_learner in fastai. It is a pickle: load it only from a "
    "server you trust."
)


def render(
    actor: Actor,
    models: Sequence[ModelRecord],
    key: str,
    owners: Mapping[int, str] | None = None,
) -> None:
    """Pick one of ``models`` and offer its safe bundle, its card (and fastai export, where there
    is one).

    Args:
        actor: Who downloads (``profile.ANONYMOUS`` for a visitor: public models only).
        key: Prefix of the widgets' keys: ``<key>_pick``, ``<key>_bundle``, ``<key>_card``,
            ``<key>_fastai``.
        owners: The owner's user name by model id, to tell apart models of several people.
    """
    if not models:
        return
    by_id = {m.id: m for m in models}

    def label(model_id: int) -> str:
        model = by_id[model_id]
        owner = f", by {owners[model_id]}" if owners and model_id in owners else ""
        return f"{model.name} ({model.arch}{owner})"

    chosen_id = st.selectbox("Model to download", list(by_id), format_func=label, key=f"{key}_pick")
    chosen = by_id[chosen_id]
    offers = [
        (
            BUNDLE_LABEL,
            "bundle",
            model_files.model_bundle,
            model_files.bundle_file_name(chosen),
            model_files.BUNDLE_MEDIA_TYPE,
            BUNDLE_HELP,
        )
    ]
    offers.append(
        (
            CARD_LABEL,
            "card",
            model_files.model_card,
            model_files.card_file_name(chosen),
            model_files.CARD_MEDIA_TYPE,
            CARD_HELP,
        )
    )
    if model_files.has_fastai_export(chosen):
        offers.append(
            (
                EXPORT_LABEL,
                "fastai",
                model_files.model_export,
                model_files.export_file_name(chosen),
                model_files.EXPORT_MEDIA_TYPE,
                EXPORT_HELP,
            )
        )
    for column, (title, kind, fetch, file_name, mime, help_text) in zip(
        st.columns(3), offers, strict=False
    ):
        column.download_button(
            title,
            data=lambda fetch=fetch: fetch(actor, chosen.id).data,
            file_name=file_name,
            mime=mime,
            key=f"{key}_{kind}",
            icon=":material/download:",
            help=help_text,
            on_click="ignore",
        )
