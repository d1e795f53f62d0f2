"""A stored model's files, for everyone who may use the model: its owner, and anyone at all once
it is public.

* The **safe bundle** (a zip of ``model.safetensors`` + ``manifest.json``): every stored model
  has one, whether it was trained here, uploaded, imported from an official AASIST checkpoint or
  calibrated. It is what another workbench (or this one, under another name) takes back as an
  upload, and the manifest carries all a loader needs: architecture, classes, feature spec,
  sample rate, clip length, calibration. A model with validation figures of its own adds them,
  signed by this server, as ``validation.json`` (:mod:`fakevoice.bundle_figures`).
* The **fastai export** (``model.pkl``), where training left one: for people who go on in fastai.
  It is a pickle this server wrote; uploading it again finds the model by its checksum.
* The **model card** (Markdown), written from the manifest and the validation figures.

Before a file leaves, its bytes are checked against the sha256 the store kept when the model was
stored: a file changed on disk since is refused, never handed out.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fakevoice import store
from fakevoice.artefacts import BUNDLE_MANIFEST, BUNDLE_WEIGHTS
from fakevoice.bundle_figures import FIGURES_FILE, signed_figures
from fakevoice.errors import FakeVoiceError, ModelFileError, NotFoundError
from fakevoice.services.model_cards import model_card_markdown
from fakevoice.services.uploads import FASTAI_EXPORT
from fakevoice.store.records import Actor, ModelRecord

logger = logging.getLogger(__name__)

BUNDLE_MEDIA_TYPE = "application/zip"
EXPORT_MEDIA_TYPE = "application/octet-stream"
CARD_MEDIA_TYPE = "text/markdown; charset=utf-8"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 80


@dataclass(frozen=True)
class ModelFile:
    """A file ready to hand out: the name to save it under, its bytes and media type."""

    file_name: str
    data: bytes
    media_type: str


def _stem(model: ModelRecord) -> str:
    """A file name stem made from the model's name (letters, digits, ``.``, ``_``, ``-`` only),
    never empty and never a hidden file's name."""
    stem = _UNSAFE.sub("_", model.name).strip("._-")[:_MAX_STEM]
    return stem or f"model-{model.id}"


def bundle_file_name(model: ModelRecord) -> str:
    """The name a downloaded safe bundle is saved under, e.g. ``resnet18_clean-bundle.zip``."""
    return f"{_stem(model)}-bundle.zip"


def export_file_name(model: ModelRecord) -> str:
    """The name a downloaded fastai export is saved under, e.g. ``resnet18_clean.pkl``."""
    return f"{_stem(model)}.pkl"


def card_file_name(model: ModelRecord) -> str:
    """The name a downloaded model card is saved under, e.g. ``resnet18_clean-card.md``."""
    return f"{_stem(model)}-card.md"


def has_fastai_export(model: ModelRecord) -> bool:
    """Whether training left a fastai export of this model (uploaded and imported models have
    none)."""
    return FASTAI_EXPORT in model.files


def model_bundle(actor: Actor, model: int | ModelRecord) -> ModelFile:
    """The model's safe bundle as a zip, for its owner or anyone when it is public.

    Args:
        model: The model's id, or its record as just read for this actor (not read again).

    Raises:
        NotFoundError: The actor may not use the model.
        ModelFileError: A bundle file is missing or changed since the model was stored.
    """
    model = _readable(actor, model)
    manifest, weights = (
        _checked_bytes(model, BUNDLE_MANIFEST),
        _checked_bytes(model, BUNDLE_WEIGHTS),
    )
    try:
        figures = signed_figures(model.metrics or {}, manifest, weights)
    except FakeVoiceError as exc:  # the signing key is unusable: the operator's to mend
        logger.warning("model %d's bundle goes without its figures: %s", model.id, exc)
        figures = None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(BUNDLE_MANIFEST, manifest, zipfile.ZIP_DEFLATED)
        if figures is not None:
            archive.writestr(FIGURES_FILE, figures, zipfile.ZIP_DEFLATED)
        # Weights are floats, which deflate barely shrinks (a few %) at seconds per 100 MB.
        archive.writestr(BUNDLE_WEIGHTS, weights, zipfile.ZIP_STORED)
    return ModelFile(bundle_file_name(model), buffer.getvalue(), BUNDLE_MEDIA_TYPE)


def model_export(actor: Actor, model: int | ModelRecord) -> ModelFile:
    """The model's fastai export (``model.pkl``), for its owner or anyone when it is public.

    Args:
        model: The model's id, or its record as just read for this actor (not read again).

    Raises:
        NotFoundError: The actor may not use the model, or it has no fastai export.
        ModelFileError: The export is missing or changed since the model was stored.
    """
    model = _readable(actor, model)
    if not has_fastai_export(model):
        raise NotFoundError(
            f"Model {model.name!r} has no fastai export: only models trained here have one. "
            "Its safe bundle holds the same weights."
        )
    data = _checked_bytes(model, FASTAI_EXPORT)
    return ModelFile(export_file_name(model), data, EXPORT_MEDIA_TYPE)


def model_card(actor: Actor, model: int | ModelRecord) -> ModelFile:
    """The model's card (Markdown, :mod:`fakevoice.services.model_cards`): what it is, what it
    was trained and checked on, how well it did and where it is weak; for its owner or anyone
    when it is public.

    Args:
        model: The model's id, or its record as just read for this actor (not read again).

    Raises:
        NotFoundError: The actor may not use the model.
        ModelFileError: Its manifest is missing, changed since it was stored, or unreadable.
    """
    model = _readable(actor, model)
    try:
        manifest = json.loads(_checked_bytes(model, BUNDLE_MANIFEST))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"The manifest of model {model.name!r} cannot be read.") from None
    with store.session_scope(readonly=True) as session:
        try:
            owner: str | None = store.get_user(session, model.owner_id).username
        except NotFoundError:
            owner = None
    text = model_card_markdown(model, manifest if isinstance(manifest, dict) else {}, owner)
    return ModelFile(card_file_name(model), text.encode("utf-8"), CARD_MEDIA_TYPE)


def _readable(actor: Actor, model: int | ModelRecord) -> ModelRecord:
    if isinstance(model, ModelRecord):
        return model
    with store.session_scope(readonly=True) as session:
        return store.get_model(session, actor, model)


def _checked_bytes(model: ModelRecord, name: str) -> bytes:
    """One of the model's files, read once and compared with the sha256 the store kept."""
    try:
        data = (Path(model.path) / name).read_bytes()
    except OSError:
        raise ModelFileError(
            f"The file {name} of model {model.name!r} is missing on the server; "
            "ask its administrator."
        ) from None
    expected = model.files.get(name)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(
            f"The file {name} of model {model.name!r} changed since it was stored; "
            "it is not handed out."
        )
    return data
