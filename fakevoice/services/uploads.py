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
import json
import logging
import re
import zipfile
import zlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from fakevoice import store
from fakevoice.artefacts import (
    BUNDLE_MANIFEST,
    BUNDLE_WEIGHTS,
    MANIFEST_FORMAT,
)
from fakevoice.bundle_figures import (
    CLEARED_CALIBRATION,
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
from fakevoice.datasets.fingerprints import (
    FINGERPRINT_HEX,
    MAX_FINGERPRINTS,
    TRAINING_AUDIO,
    valid_fingerprints,
)
from fakevoice.decoding import size_text
from fakevoice.errors import (
    FakeVoiceError,
    FileTooLargeError,
    ModelFileError,
)
from fakevoice.features import FeatureSpec
from fakevoice.services.verdicts import import_aasist, store_bundle_as_model
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, ModelRecord
from fakevoice.trainspec import ARCH_NAMES, WAVEFORM_ARCHS, TrainSpec

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

FASTAI_EXPORT = "model.pkl"
MAX_MANIFEST_BYTES = 1 << 20
MAX_ZIP_ENTRIES = 64
MAX_CLASSES = 256
MAX_CLASS_NAME = 64
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}")  # a calibration's dataset name
CLIP_SAMPLES_RANGE = (1600, 16000 * 30)  # 0.1 s .. 30 s at 16 kHz
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
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
    raw = _parse_manifest(manifest_bytes)
    manifest = validate_manifest(raw)
    model = _load_weights(manifest, weights_bytes)
    kept, dropped, cleared = _optional_parts(raw, len(manifest["class_names"]), model)
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


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{BUNDLE_MANIFEST} in the zip is not valid JSON.") from None
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{BUNDLE_MANIFEST} in the zip must hold a JSON object.")
    return manifest


def validate_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Check a bundle manifest and return the clean copy the server will store (its optional
    parts, kept when they pass their own checks, are added once the weights are loaded:
    :func:`_optional_parts`).

    Checks: the format tag, a known architecture, 2 to 256 distinct class names including
    ``bonafide``, the input kind the architecture takes, a window of 0.1 to 30 seconds, a common
    sample rate and, for image models, a valid feature spec.

    Raises:
        ModelFileError: naming the first field that is wrong and what is allowed.
    """
    where = f"{BUNDLE_MANIFEST}:"
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelFileError(
            f"{where} format must be {MANIFEST_FORMAT!r}; got {manifest.get('format')!r}."
        )
    arch = manifest.get("arch")
    if arch not in ARCH_NAMES:
        raise ModelFileError(
            f"{where} arch must be one of {', '.join(ARCH_NAMES)}; got {str(arch)[:60]!r}."
        )
    classes = manifest.get("class_names")
    if (
        not isinstance(classes, list)
        or not 2 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelFileError(
            f"{where} class_names must be 2 to {MAX_CLASSES} distinct names of 1 to "
            f"{MAX_CLASS_NAME} characters."
        )
    if "bonafide" not in classes:
        raise ModelFileError(f"{where} class_names must include 'bonafide' (real human speech).")
    bonafide_index = classes.index("bonafide")
    if manifest.get("bonafide_index", bonafide_index) != bonafide_index:
        raise ModelFileError(f"{where} bonafide_index must point at 'bonafide' in class_names.")
    expected_kind = "waveform" if arch in WAVEFORM_ARCHS else "image"
    if manifest.get("input_kind") != expected_kind:
        raise ModelFileError(
            f"{where} input_kind must be {expected_kind!r} for {arch}; "
            f"got {str(manifest.get('input_kind'))[:60]!r}."
        )
    clip_samples = manifest.get("clip_samples")
    low, high = CLIP_SAMPLES_RANGE
    if isinstance(clip_samples, bool) or not isinstance(clip_samples, int):
        raise ModelFileError(f"{where} clip_samples must be a whole number of samples.")
    if not low <= clip_samples <= high:
        raise ModelFileError(f"{where} clip_samples must be between {low} and {high}.")
    sample_rate = manifest.get("sample_rate", 16000)
    if sample_rate not in SAMPLE_RATES or isinstance(sample_rate, bool):
        raise ModelFileError(
            f"{where} sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))} Hz."
        )
    feature_spec: dict[str, Any] | None = None
    if expected_kind == "image":
        raw_spec = manifest.get("feature_spec")
        if not isinstance(raw_spec, dict):
            raise ModelFileError(f"{where} an image model needs a feature_spec object.")
        try:
            feature_spec = FeatureSpec.from_dict(raw_spec).to_dict()
        except (FakeVoiceError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{where} feature_spec is not valid: {exc}") from None
    clean: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "arch": arch,
        "task": "binary" if len(classes) == 2 else "multiclass",
        "class_names": list(classes),
        "bonafide_index": bonafide_index,
        "input_kind": expected_kind,
        "feature_spec": feature_spec,
        "normalize": "imagenet" if expected_kind == "image" else None,
        "sample_rate": int(sample_rate),
        "clip_samples": int(clip_samples),
    }
    if "arch_config" in manifest:
        # What rebuilds the exact network (e.g. SpecNet's input pooling); dropping it would
        # silently rebuild another network. _load_weights checks it when it builds the model.
        clean["arch_config"] = manifest["arch_config"]
    return clean


def _optional_parts(
    manifest: dict[str, Any], classes: int, model: nn.Module
) -> tuple[dict[str, Any], dict[str, str], dict[str, list[str]]]:
    """The optional parts a bundle's manifest brings (:data:`~fakevoice.bundle_figures.
    MANIFEST_PARTS`: calibration, familiarity reference, training-clip fingerprints, training
    recipe), each rebuilt from its checked values (bounds, shapes, finite numbers; the reference
    of the width the weights' last layer reads); for each left out, why, in a fixed phrase
    (never the bundle's own words: the page shows it as markdown); and for each kept with values
    cleared (a calibration's dataset name with markup, an impossible fit figure), which
    (:data:`~fakevoice.bundle_figures.CLEARED_CALIBRATION`' names). A model that lacks them still
    scores, as models trained before them do, while wrong ones would shift every verdict,
    caution or test; the uploader is told which were left out or changed
    (:func:`upload_warning`)."""
    from fakevoice.metrics.calibration import Calibration
    from fakevoice.metrics.familiarity import Familiarity

    kept: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    cleared: dict[str, list[str]] = {}
    raw = manifest.get("calibration")
    calibration = Calibration.from_dict(raw, classes) if raw is not None else None
    if calibration is not None and isinstance(raw, dict):
        kept["calibration"] = calibration.to_dict()
        # Words another user's reports print: a plain name, never markup or a link.
        dataset, split = raw.get("dataset"), raw.get("split")
        if isinstance(dataset, str) and PLAIN_NAME.fullmatch(dataset):
            kept["calibration"]["dataset"] = dataset
        if split in ("valid", "all"):
            kept["calibration"]["split"] = split
        # A value given but not kept as given (None: a figure that was not measured).
        if fields := [
            field
            for field in CLEARED_CALIBRATION
            if raw.get(field) is not None and kept["calibration"].get(field) != raw[field]
        ]:
            cleared["calibration"] = fields
    elif raw is not None:
        dropped["calibration"] = (
            "its temperature or biases are missing or out of bounds, or it has not one bias "
            "per class"
        )
    raw = manifest.get("familiarity")
    familiarity = Familiarity.from_dict(raw, classes) if raw is not None else None
    if familiarity is not None and familiarity.fits(model):
        kept["familiarity"] = familiarity.to_dict()
    elif familiarity is not None:
        dropped["familiarity"] = "it was made for a network of another width than these weights"
    elif raw is not None:
        dropped["familiarity"] = "its numbers are missing, malformed or out of bounds"
    raw = manifest.get(TRAINING_AUDIO)
    heard = valid_fingerprints(raw) if raw is not None else None
    if heard is not None:
        kept[TRAINING_AUDIO] = heard
    elif raw is not None:
        dropped[TRAINING_AUDIO] = (
            f"they are not a list of at most {MAX_FINGERPRINTS:,} fingerprints of "
            f"{FINGERPRINT_HEX} hex digits"
        )
    raw = manifest.get("train_spec")
    try:
        if isinstance(raw, dict):
            kept["train_spec"] = TrainSpec.from_dict(raw).to_dict()
    except (FakeVoiceError, TypeError, ValueError):
        pass  # said below, as for a recipe that is no object at all
    if raw is not None and "train_spec" not in kept:
        dropped["train_spec"] = "it is not a training recipe this server can read"
    for part, reason in dropped.items():
        logger.info("dropping %s from an uploaded manifest: %s", part, reason)
    for part, fields in cleared.items():
        logger.info("clearing %s of %s in an uploaded manifest", ", ".join(fields), part)
    return kept, dropped, cleared


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
