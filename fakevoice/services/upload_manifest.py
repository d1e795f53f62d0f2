"""A model bundle's ``manifest.json`` as an upload brings it: checked, and rebuilt from its checked
values (:mod:`fakevoice.services.uploads` reads the bundle and stores the model).

:func:`validate_manifest` checks what every bundle must say (format, architecture, classes,
input, window, sample rate, features) and refuses the upload naming the first field that is
wrong; :func:`optional_parts` keeps the optional parts that pass their own checks and says, in
fixed phrases, which it left out or changed.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from fakevoice.artefacts import BUNDLE_MANIFEST, MANIFEST_FORMAT
from fakevoice.bundle_figures import CLEARED_CALIBRATION
from fakevoice.datasets.fingerprints import (
    FINGERPRINT_HEX,
    MAX_FINGERPRINTS,
    TRAINING_AUDIO,
    valid_fingerprints,
)
from fakevoice.errors import FakeVoiceError, ModelFileError
from fakevoice.features import FeatureSpec
from fakevoice.trainspec import ARCH_NAMES, WAVEFORM_ARCHS, TrainSpec

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

MAX_CLASSES = 256
MAX_CLASS_NAME = 64
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}")  # a calibration's dataset name
CLIP_SAMPLES_RANGE = (1600, 16000 * 30)  # 0.1 s .. 30 s at 16 kHz
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


def parse_manifest(raw: bytes) -> dict[str, Any]:
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
    :func:`optional_parts`).

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


def optional_parts(
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
    (:func:`~fakevoice.services.uploads.upload_warning`)."""
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
