"""The model a user judges clips with, on the Evaluate page: preselected by ``?model=<id>``,
uploaded (a safe bundle, an AASIST checkpoint, an export of this server), or chosen among
theirs and the public ones, with its card."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import streamlit as st

from components import upload_megabytes
from components.user_text import plain
from components.verdict_view import model_card, model_label, model_summary
from fakevoice import services
from fakevoice.errors import FakeVoiceError
from fakevoice.services import uploads
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord, record_id


def model_from_url(actor: Actor) -> None:
    """Preselect ``?model=<id>`` once per URL value; explain when it is not a usable model."""
    raw = st.query_params.get("model")
    if raw is None:
        return
    model_id = record_id(raw)
    if model_id is None:
        st.error(f"There is no model with id {plain(repr(raw[:40]))}.")
        return
    try:
        model = services.get_model(actor, model_id)
    except FakeVoiceError as exc:
        st.error(str(exc))
        return
    if st.session_state.get("eval_url_model") != raw:
        st.session_state["eval_url_model"] = raw
        st.session_state["eval_model"] = model.id


def upload_model(actor: Actor) -> None:
    with st.expander("Upload a model", icon=":material/upload_file:"):
        st.caption(
            "A safe bundle (zip of model.safetensors + manifest.json, as downloaded from your "
            "profile), an official AASIST / AASIST-L checkpoint (.pth), or a model.pkl this "
            "server exported. Other pickle files are refused: they could run code."
        )
        upload = st.file_uploader(
            "Model file",
            key="eval_model_upload",
            max_upload_size=upload_megabytes(get_settings().max_model_upload_bytes),
        )
        name = st.text_input(
            "Name for the model",
            key="eval_model_name",
            placeholder="the file name without its extension",
        )
        if not st.button("Import model", key="eval_model_import", disabled=upload is None):
            return
        assert upload is not None
        name = name.strip() or PurePosixPath(upload.name).stem[:100] or "uploaded model"
        try:
            model = uploads.import_uploaded_model(actor, name, upload.name, upload.getvalue())
        except FakeVoiceError as exc:
            st.error(str(exc))
            return
        st.session_state["eval_model"] = model.id
        st.success(f"Model {model.name!r} ({model.arch}) is ready; it is selected below.")
        if (warning := uploads.upload_warning(model)) is not None:
            st.warning(warning, icon=":material/warning:")


def choose_model(actor: Actor, models: list[ModelRecord], owners: Mapping[int, str]) -> ModelRecord:
    by_id = {m.id: m for m in models}
    if st.session_state.get("eval_model") not in by_id:
        # Deleted (here, in another tab, the API) or no longer shared: say so, rather than
        # judge the next clip with another model without a word.
        if st.session_state.pop("eval_model", None) is not None:
            name = st.session_state.get("eval_chosen_model_name")
            gone = f"Model '{plain(name)}'" if name else "The model chosen before"
            st.warning(
                f"{gone} is no longer among the models you may use (deleted, or no longer "
                "shared); the first of the list is chosen instead.",
                icon=":material/warning:",
            )
    chosen = st.selectbox(
        "Model",
        list(by_id),
        format_func=lambda i: model_label(by_id[i], actor.user_id, owners),
        key="eval_model",
        help="Your models and the public ones.",
    )
    st.session_state["eval_chosen_model_name"] = by_id[chosen].name
    st.caption(model_summary(by_id[chosen]))
    model_card(actor, by_id[chosen])
    return by_id[chosen]
