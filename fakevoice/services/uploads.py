"""Models people upload: a safe bundle, an official AASIST checkpoint, or a ``.pkl`` we exported.

The kind of an upload is read from its content, never from its name:

* a zip holding ``model.safetensors`` + ``manifest.json`` (at its root or in one folder) is a safe
  bundle: the manifest is validated, the weights are loaded strictly into the architecture it
  names, and the bundle is stored under ``<data dir>/models/<uuid>``; its signed validation
  figures (``validation.json``, when present) are sorted by who signed them
  (:mod:`fakevoice.bundle_figures`); figures that fail their check are not kept, nor are a
  calibration, familiarity reference, training-clip fingerprints or training recipe that fail
  theirs, nor a kept calibration's values that fail theirs, and :func:`upload_warning` tells the
  uploader which and why;
* a PyTorch checkpoint (torch's zip format or its legacy pickle format) is offered to
  :func:`~fakevoice.services.verdicts.import_aasist`, which reads tensors only;
* any other file (a fastai ``.pkl`` included) is never unpickled: when its sha256 is the
  ``model.pkl`` of a stored model the actor may use, that model is returned; otherwise it is refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
import zlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from fakevoice import store
from fakevoice.artefacts import (
    BUNDLE_MANIFEST,
    BUNDLE_WEIGHTS,
)
from fakevoice.bundle_figures import (
    CLEARED_VALUES,
    DROPPED,
    DROPPED_PARTS,
    FIGURES_FILE,
    REPORTED,
    BundleFigures,
    dropped_figures_text,
    dropped_parts_text,
    read_figures,
)
from fakevoice.decoding import size_text
from fakevoice.errors import (
    FileTooLargeError,
    ModelFileError,
)
from fakevoice.services.upload_manifest import optional_parts, parse_manifest, validate_manifest
from fakevoice.services.verdicts import import_aasist, store_bundle_as_model
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

FASTAI_EXPORT = "model.pkl"
MAX_MANIFEST_BYTES = 1 << 20
MAX_ZIP_ENTRIES = 64
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# torch's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
PICKLE_MAGIC = b"\x80"
ACCEPTED = (
    "The workbench accepts a safe bundle (a zip of model.safetensors + manifest.json), an "
    "official AASIST / AASIST-L checkpoint, or a model.pkl that this server exported."
)
UNKNOWN_PICKLE = (
    "This pickle file was not exported by this server for a model you may use, and the server "
    "never unpickles files it did not write (they can run code). Upload the model's safe bundle "
    "(a zip of model.safetensors + manifest.json) instead."
)


def import_uploaded_model(actor: Actor, name: str, file_name: str, data: bytes) -> ModelRecord:
    """Turn an uploaded model file into a model the actor can use.

    Args:
        actor: Who uploads it (the owner of a newly stored model).
        name: The name to store a new model under (unique among the actor's models).
        file_name: The client's name for the file, for messages and the model's metrics only.
        data: The file's bytes (at most ``settings.max_model_upload_bytes``).

    Returns:
        The stored model: a new one for a bundle or an AASIST checkpoint, or the existing model
        when the file is the ``model.pkl`` of a model the actor may use.

    Raises:
        FileTooLargeError: The file is larger than the upload limit.
        ModelFileError: The file is none of the accepted kinds, or does not fit its architecture.
        ConflictError: The actor already has a model with this name.
        InvalidSpecError: The name is empty or too long.
    """
    limit = get_settings().max_model_upload_bytes
    if len(data) > limit:
        raise FileTooLargeError(
            f"The model file is {size_text(len(data))}; uploads are limited to {size_text(limit)}."
        )
    if not data:
        raise ModelFileError("The uploaded model file is empty.")
    known = exported_model(actor, data)
    if known is not None:
        logger.info("upload %r is model %d's fastai export", file_name, known.id)
        return known
    if data.startswith(ZIP_MAGIC):
        return _import_zip(actor, name, file_name, data)
    if data.startswith(TORCH_LEGACY_MAGIC):
        return import_aasist(actor, data, name)
    if data.startswith(PICKLE_MAGIC):
        raise ModelFileError(UNKNOWN_PICKLE)
    if _looks_like_safetensors(data):
        raise ModelFileError(
            "A bare model.safetensors file does not say which model it belongs to: upload a zip "
            "holding it together with its manifest.json."
        )
    raise ModelFileError(f"This file is not a model file. {ACCEPTED}")


def upload_warning(model: ModelRecord) -> str | None:
    """What the person who uploaded ``model`` should know although the upload succeeded: which
    parts of its bundle (validation figures, calibration, familiarity reference, training-clip
    fingerprints, training recipe) failed their check and were not kept, and which values of a
    kept calibration were cleared, and why, one sentence each (None when there is nothing to
    say). The page shows it, the API answers it, the CLI prints it."""
    figures = dropped_figures_text(model.metrics)
    return " ".join([*([figures] if figures else []), *dropped_parts_text(model.metrics)]) or None


def is_export_of(model: ModelRecord, data: bytes) -> bool:
    """Whether ``data`` is ``model``'s fastai export: an upload of it stores nothing new and
    :func:`import_uploaded_model` answers the model itself."""
    return model.files.get(FASTAI_EXPORT) == hashlib.sha256(data).hexdigest()


def exported_model(actor: Actor, data: bytes) -> ModelRecord | None:
    """The model whose fastai export (``model.pkl``) has exactly these bytes, if the actor may use it.

    Only the checksum is compared; the file is never unpickled. A match on a model the actor may
    not read counts as no match (its existence is not revealed).
    """
    digest = hashlib.sha256(data).hexdigest()
    with store.session_scope(readonly=True) as session:
        return store.find_model_by_sha256(session, actor, digest, FASTAI_EXPORT)


def _import_zip(actor: Actor, name: str, file_name: str, data: bytes) -> ModelRecord:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ModelFileError(f"The zip file is damaged and cannot be read. {ACCEPTED}") from None
    with archive:
        names = [entry.filename for entry in entries]
        if any(_is_torch_pickle(n) for n in names):
            if any(_is_fastai_export(archive, n) for n in names if _is_torch_pickle(n)):
                raise ModelFileError(UNKNOWN_PICKLE)
            return import_aasist(actor, data, name)
        if len(entries) > MAX_ZIP_ENTRIES:
            raise ModelFileError(
                f"The zip holds {len(entries)} files; a model bundle holds two "
                f"({BUNDLE_WEIGHTS} and {BUNDLE_MANIFEST}), and perhaps {FIGURES_FILE}."
            )
        manifest_bytes = _bundle_member(archive, BUNDLE_MANIFEST, MAX_MANIFEST_BYTES)
        weights_bytes = _bundle_member(
            archive, BUNDLE_WEIGHTS, get_settings().max_model_upload_bytes
        )
        figures_bytes = (
            _bundle_member(archive, FIGURES_FILE, MAX_MANIFEST_BYTES)
            if any(PurePosixPath(n).name == FIGURES_FILE for n in names)
            else None
        )
    raw = parse_manifest(manifest_bytes)
    manifest = validate_manifest(raw)
    model = _load_weights(manifest, weights_bytes)
    kept, dropped, cleared = optional_parts(raw, len(manifest["class_names"]), model)
    manifest.update(kept)
    manifest["source"] = f"uploaded bundle ({file_name[:200]})"
    metrics: dict[str, Any] = {DROPPED_PARTS: dropped} if dropped else {}
    if cleared:
        metrics[CLEARED_VALUES] = cleared
    figures = (
        read_figures(figures_bytes, manifest_bytes, weights_bytes, manifest["class_names"])
        if figures_bytes is not None
        else None
    )
    if isinstance(figures, BundleFigures) and figures.own:
        metrics.update(figures.metrics)  # this server measured them, for this very model
    elif isinstance(figures, BundleFigures):
        metrics[REPORTED] = figures.metrics
    elif figures is not None:
        metrics[DROPPED] = figures.reason
    metrics["source"] = manifest["source"]
    if "calibration" in manifest:
        metrics["calibration"] = manifest["calibration"]
    return store_bundle_as_model(actor, name, model, manifest, metrics=metrics)


def _is_torch_pickle(name: str) -> bool:
    """Whether a zip entry is the pickle of torch's zip format (``<archive>/data.pkl``)."""
    parts = PurePosixPath(name).parts
    return len(parts) == 2 and parts[1] == "data.pkl"


def _is_fastai_export(archive: zipfile.ZipFile, name: str) -> bool:
    """Whether a torch pickle names fastai classes (a whole exported Learner, not weights).

    The pickle's bytes are searched for module names; it is never unpickled.
    """
    try:
        with archive.open(name) as handle:
            head = handle.read(MAX_MANIFEST_BYTES)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, zlib.error):
        return False
    return b"fastai." in head


def _bundle_member(archive: zipfile.ZipFile, wanted: str, max_bytes: int) -> bytes:
    """The bytes of the bundle file ``wanted``, at the zip's root or in one folder."""
    matches = [
        entry
        for entry in archive.infolist()
        if not entry.is_dir() and PurePosixPath(entry.filename).name == wanted
    ]
    safe = [e for e in matches if _plain_relative(e.filename) and e.filename.count("/") <= 1]
    if not safe:
        raise ModelFileError(f"The zip holds no {wanted}. {ACCEPTED}")
    if len(safe) > 1:
        raise ModelFileError(f"The zip holds {len(safe)} files named {wanted}; a bundle has one.")
    entry = safe[0]
    if entry.file_size > max_bytes:
        raise FileTooLargeError(
            f"{wanted} in the zip unpacks to {size_text(entry.file_size)}; the limit is "
            f"{size_text(max_bytes)}."
        )
    try:
        with archive.open(entry) as handle:
            content = handle.read(max_bytes + 1)  # never trust the declared size
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, zlib.error, EOFError):
        raise ModelFileError(
            f"{wanted} in the zip cannot be read (damaged or encrypted)."
        ) from None
    if len(content) > max_bytes:
        raise FileTooLargeError(f"{wanted} in the zip unpacks to more than {size_text(max_bytes)}.")
    return content


def _plain_relative(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and ":" not in name


def _load_weights(manifest: dict[str, Any], weights: bytes) -> nn.Module:
    """The architecture of ``manifest`` with ``weights`` loaded strictly (proves they fit)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from fakevoice.models.registry import build_inference_model

    try:
        state = load_safetensors(weights)
    except (SafetensorError, ValueError, OSError, RuntimeError):
        raise ModelFileError(
            f"{BUNDLE_WEIGHTS} in the zip is not a valid safetensors file."
        ) from None
    model = build_inference_model(manifest)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise ModelFileError(
            f"The weights in {BUNDLE_WEIGHTS} do not fit a {manifest['arch']} model with "
            f"{len(manifest['class_names'])} classes."
        ) from None
    return model.eval()


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header = int.from_bytes(data[:8], "little")
    return 0 < header < len(data) and data[8:9] == b"{"
