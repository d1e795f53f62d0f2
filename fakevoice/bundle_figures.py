"""Validation figures that travel with a model's safe bundle, signed.

A model trained here knows how it did on its validation split (EER with its interval, AUC,
accuracy, EER per generator and noise level). Its bundle used to leave that behind, so a model
shared as a file arrived with no figures at all. Now the bundle carries ``validation.json``: the
figures, the SHA-256 of the bundle's manifest and weights they belong to (a changed manifest,
say another feature spec, is another model), the server's public key and an Ed25519 signature
with it (:mod:`fakevoice.signing`, the key that signs verdict reports).

When a bundle is uploaded (:mod:`fakevoice.services.uploads`), :func:`read_figures` sorts them:

* **signed by this server** (its key, or one it signed with before a rotation) and for these
  weights: the figures are this server's own, and the stored model shows them as a model trained
  here does;
* **signed by another key**, unchanged and for this manifest and these weights: kept apart as the figures the
  bundle *reports*, with the key's id, in a checked subset (numbers in range, names of the
  model's classes). Whoever reads them compares the id with the key the sharing server publishes
  (``GET /v1/reports/key``, ``fakevoice report key``); the figures are never used as the model's;
* changed since they were signed, unsigned, for another manifest or other weights, or malformed:
  dropped, and why is kept as :data:`DROPPED` in the model's metrics, so that the upload answer,
  the model card and ``fakevoice models show`` say it (:func:`dropped_figures_text`): a bundle
  that claimed figures it cannot back is worth knowing of, for whoever shared it and whoever
  relies on it.

A signature says who measured the figures and that they are unchanged, not that they hold on
other audio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fakevoice import signing
from fakevoice.datasets.fingerprints import TRAINING_AUDIO
from fakevoice.errors import FakeVoiceError
from fakevoice.metrics.calibration import FIT_FIGURES

logger = logging.getLogger(__name__)

FIGURES_FILE = "validation.json"
FIGURES_FORMAT = "fakevoice-validation/1"
REPORTED = "reported_validation"
"""The key of a model's metrics that holds the figures another server's bundle reports."""
DROPPED = "dropped_validation"
"""The key of a model's metrics that says, in words, why the figures its bundle carried failed
their check (:func:`dropped_figures_text` makes the sentence)."""
DROPPED_PARTS = "dropped_parts"
"""The key of a model's metrics that says, part by part, what of its bundle's manifest failed
its check and was not kept: ``{part: reason}``, the parts being :data:`MANIFEST_PARTS`' keys
(the figures of ``validation.json`` keep theirs under :data:`DROPPED`, as before)."""
MANIFEST_PARTS = {
    "calibration": (
        "its calibration",
        "its probabilities are the network's own, uncalibrated",
        "calibration",
    ),
    "familiarity": (
        "its familiarity reference",
        "its verdicts carry no typicality, and no caution for a clip unlike its training audio",
        "familiarity reference",
    ),
    TRAINING_AUDIO: (
        "the fingerprints of its training clips",
        "a test on a dataset cannot count the items whose audio it was trained on",
        "training-clip fingerprints",
    ),
    "train_spec": (
        "its training recipe",
        "its card cannot say what it was trained on, and a test on that dataset cannot set its "
        "training split apart",
        "training recipe",
    ),
}
"""The optional parts of a bundle's manifest that an upload checks: what each is, in words,
what the model lacks without it, and its short name (for a line that lists them)."""
CLEARED_VALUES = "cleared_values"
"""The key of a model's metrics that says which values of its bundle manifest's calibration,
kept, failed their check and were cleared: ``{"calibration": [field, ...]}``, the fields being
:data:`CLEARED_CALIBRATION` (keyed by part, as :data:`DROPPED_PARTS`, for
:func:`copied_metrics`)."""
CLEARED_CALIBRATION = {
    "dataset": "its dataset name (not a plain name of letters, digits, spaces, dots, dashes and "
    "underscores)",
    "split": "its split (neither valid nor all)",
    "items": "its item count (not a positive whole number)",
    **dict.fromkeys(FIT_FIGURES, "(out of range: an ECE outside 0 to 1, a negative NLL)"),
}
"""The values of a bundle's calibration that an upload checks one by one, and for each, what it
is and why it was cleared, in a fixed phrase (never the bundle's own words); the fit figures
are named together, by their field names."""
DROPPED_FROM = "dropped_from"
"""The key of a calibrated copy's metrics that names, by id, the uploaded model whose bundle
:data:`DROPPED`, :data:`DROPPED_PARTS`, :data:`CLEARED_VALUES` and :data:`REPORTED` speak of
(set by :func:`copied_metrics`; absent on the uploaded model itself, where they speak of its own
bundle)."""
_NOT_CARRIED = {
    "source",
    "calibration",
    REPORTED,
    DROPPED,
    DROPPED_PARTS,
    CLEARED_VALUES,
    DROPPED_FROM,
}
"""Metrics a bundle's figures leave out: where the model came from is the upload's to say, and
the calibration travels in the manifest (checked there)."""
_RATES = ("eer", "auc", "accuracy", "macro_f1")
_COUNTS = ("train_items", "valid_items")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ +-]{0,63}")  # a noise level's name
_INTERVAL_UNITS = ("speakers", "utterances")


@dataclass(frozen=True)
class BundleFigures:
    """The figures an uploaded bundle brought.

    Attributes:
        own: signed by this server (current or retired key): the figures are its own.
        key_id: the id of the key that signed them.
        metrics: for ``own``, the model's validation figures as this server kept them; else the
            checked subset that :data:`REPORTED` holds (with ``key_id``).
    """

    own: bool
    key_id: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class DroppedFigures:
    """An uploaded bundle's figures that failed their check and are not kept.

    Attributes:
        reason: why, in words for the person who uploaded it (e.g. "they were changed after
            they were signed").
    """

    reason: str


def signed_figures(metrics: Mapping[str, Any], manifest: bytes, weights: bytes) -> bytes | None:
    """``validation.json`` for a bundle: the model's validation figures, bound to the bundle's
    ``manifest.json`` and ``model.safetensors`` bytes and signed; None when the model kept no
    validation figures of its own (uploaded without them, imported from a checkpoint)."""
    if not isinstance(metrics.get("eer"), int | float) or metrics.get(REPORTED) is not None:
        return None
    figures = _finite({k: v for k, v in metrics.items() if k not in _NOT_CARRIED})
    document = signing.sign(
        {
            "format": FIGURES_FORMAT,
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "figures": figures,
            "public_key": signing.public_key_pem(),
        }
    )
    return json.dumps(document, indent=1, sort_keys=True).encode()


def read_figures(
    raw: bytes, manifest: bytes, weights: bytes, class_names: Sequence[str]
) -> BundleFigures | DroppedFigures:
    """The figures of an uploaded bundle's ``validation.json``, sorted as the module says, or
    why they are dropped (logged too: the upload itself goes on).

    Args:
        raw: ``validation.json``'s bytes; manifest, weights: the bundle's other two files.
        class_names: the model's classes, as its checked manifest names them.
    """
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _dropped("the file is not JSON")
    if not isinstance(document, dict) or document.get("format") != FIGURES_FORMAT:
        return _dropped(f"the file is not in the {FIGURES_FORMAT} format")
    if document.get("manifest_sha256") != hashlib.sha256(manifest).hexdigest():
        return _dropped("they were signed for another manifest than this bundle's")
    if document.get("weights_sha256") != hashlib.sha256(weights).hexdigest():
        return _dropped("they were signed for other weights than this bundle's")
    figures = document.get("figures")
    if not isinstance(figures, dict):
        return _dropped("the file holds no figures")
    try:
        mine = signing.verify(document)
    except FakeVoiceError as exc:  # this server's key is unusable: the figures cannot be its own
        logger.warning("the signing key cannot check an uploaded bundle's figures: %s", exc)
    else:
        if mine.valid and mine.key_id:
            return BundleFigures(True, mine.key_id, figures)
    if not isinstance(document.get(signing.SIGNATURE_FIELD), dict):
        return _dropped("they are not signed")
    try:
        key = signing.load_public_key(str(document.get("public_key", "")).encode())
    except FakeVoiceError:
        return _dropped("they carry no usable public key to check their signature with")
    theirs = signing.verify(document, key)
    if not theirs.valid or theirs.key_id is None:
        logger.info("an uploaded bundle's figures: %s", theirs.message)
        return _dropped(
            "their signature does not fit them: they were changed after they were signed, or "
            "the signature was"
        )
    reported = _checked_subset(figures, class_names)
    if not isinstance(reported.get("eer"), float):
        return _dropped("they hold no usable EER")
    return BundleFigures(False, theirs.key_id, {**reported, "key_id": theirs.key_id})


def dropped_figures_text(metrics: Mapping[str, Any]) -> str | None:
    """One sentence for a model whose bundle's figures failed their check (None for any other):
    what the upload answer, the model card and ``fakevoice models show`` say of it."""
    reason = metrics.get(DROPPED)
    if not isinstance(reason, str):
        return None
    bundle = whose_bundle(metrics)
    return (
        f"{bundle[0].upper()}{bundle[1:]} carried validation figures ({FIGURES_FILE}) that "
        f"failed their check ({reason}); they were not kept."
    )


def dropped_parts_text(
    metrics: Mapping[str, Any], manifest: Mapping[str, Any] | None = None
) -> list[str]:
    """One sentence for each part of a model's bundle manifest that failed its check and was not
    kept (:data:`DROPPED_PARTS`, in :data:`MANIFEST_PARTS`' order), then one for each kept part
    whose values failed theirs and were cleared (:data:`CLEARED_VALUES`); empty when every part
    was kept as it came or the model came from no bundle. With the model's ``manifest``, a part
    it holds again (a calibrated copy's calibration) is not named as left out. The figures of
    ``validation.json`` have their own sentence, :func:`dropped_figures_text`."""
    dropped = [
        f"Not kept from {whose_bundle(metrics)}: {MANIFEST_PARTS[part][0]} ({part} in "
        f"manifest.json), because {metrics[DROPPED_PARTS][part]}; so {MANIFEST_PARTS[part][1]}."
        for part in _dropped_parts(metrics, manifest)
    ]
    return dropped + _cleared_values_text(metrics)


def _cleared_values_text(metrics: Mapping[str, Any]) -> list[str]:
    """The sentence for a kept calibration with values that failed their check and were
    cleared (:data:`CLEARED_VALUES`), in :data:`CLEARED_CALIBRATION`'s order; empty for none."""
    cleared = metrics.get(CLEARED_VALUES)
    fields = cleared.get("calibration") if isinstance(cleared, Mapping) else None
    if not isinstance(fields, list):
        return []
    known = [field for field in CLEARED_CALIBRATION if field in fields]
    if not known:
        return []
    named = [CLEARED_CALIBRATION[field] for field in known if field not in FIT_FIGURES]
    figures = [field for field in known if field in FIT_FIGURES]
    if figures:
        which = f"figure {figures[0]}" if len(figures) == 1 else f"figures {_listed(figures)}"
        named.append(f"its fit {which} {CLEARED_CALIBRATION[figures[0]]}")
    return [
        f"Changed from {whose_bundle(metrics)}: {MANIFEST_PARTS['calibration'][0]} (calibration "
        f"in manifest.json) is kept, but not {_listed(named, 'or')}; "
        f"{'it was' if len(known) == 1 else 'they were'} cleared."
    ]


def _listed(words: Sequence[str], last: str = "and") -> str:
    """``["a", "b", "c"]`` as "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def dropped_parts_summary(
    metrics: Mapping[str, Any], manifest: Mapping[str, Any] | None = None
) -> str | None:
    """The parts :func:`dropped_parts_text` names, in a few words for a one-line summary
    ("calibration and familiarity reference not kept from its bundle"); None when there are
    none."""
    names = [MANIFEST_PARTS[part][2] for part in _dropped_parts(metrics, manifest)]
    if not names:
        return None
    return f"{_listed(names)} not kept from {whose_bundle(metrics)}"


def whose_bundle(metrics: Mapping[str, Any]) -> str:
    """The bundle a model's :data:`DROPPED`, :data:`DROPPED_PARTS` and :data:`REPORTED` speak of,
    in words: "its bundle", or for a calibrated copy "the uploaded bundle of model 12"
    (:data:`DROPPED_FROM`)."""
    source = metrics.get(DROPPED_FROM)
    if not isinstance(source, int) or isinstance(source, bool):
        return "its bundle"
    return f"the uploaded bundle of model {source}"


def copied_metrics(
    metrics: Mapping[str, Any], model_id: int, renewed: Collection[str] = ()
) -> dict[str, Any]:
    """The metrics of model ``model_id`` as a copy made here of it keeps them (a calibrated
    copy): the parts of its bundle that were not kept are missing from the copy too, and the
    values cleared are cleared there too, less the parts the copy holds anew (``renewed``, e.g.
    ``{"calibration"}``), and they, like figures that were not kept and figures another server's
    key signed, are said to be of the uploaded model's bundle (:data:`DROPPED_FROM`), not the
    copy's, which was never uploaded."""
    by_part = (DROPPED_PARTS, CLEARED_VALUES)
    copied = {k: v for k, v in metrics.items() if k not in (*by_part, DROPPED_FROM)}
    for key in by_part:
        said = metrics.get(key)
        if isinstance(said, Mapping) and (
            still := {part: why for part, why in said.items() if part not in renewed}
        ):
            copied[key] = still
    if any(key in copied for key in (*by_part, DROPPED, REPORTED)):
        copied[DROPPED_FROM] = metrics.get(DROPPED_FROM, model_id)
    return copied


def _dropped_parts(metrics: Mapping[str, Any], manifest: Mapping[str, Any] | None) -> list[str]:
    """The parts of :data:`MANIFEST_PARTS` that :data:`DROPPED_PARTS` names, less those the
    model's ``manifest`` holds again."""
    dropped = metrics.get(DROPPED_PARTS)
    if not isinstance(dropped, Mapping):
        return []
    return [
        part
        for part in MANIFEST_PARTS
        if isinstance(dropped.get(part), str) and (manifest is None or part not in manifest)
    ]


def _checked_subset(figures: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """What another server's figures may show here: rates in 0..1, counts, EERs keyed by the
    model's machine classes or by plain noise-level names, and a well-formed EER interval."""
    kept: dict[str, Any] = {}
    for key in _RATES:
        if _rate(figures.get(key)):
            kept[key] = float(figures[key])
    for key in _COUNTS:
        value = figures.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**9:
            kept[key] = value
    machine = set(class_names) - {"bonafide"}
    for key, allowed in (
        ("generator_eer", machine.__contains__),
        ("noise_eer", lambda name: bool(_PLAIN_KEY.fullmatch(name))),
    ):
        eers = figures.get(key)
        if isinstance(eers, dict):
            rows = {
                name: float(eer)
                for name, eer in list(eers.items())[:256]
                if isinstance(name, str) and allowed(name) and _rate(eer)
            }
            if rows:
                kept[key] = rows
    interval = figures.get("eer_interval")
    if (
        isinstance(interval, dict)
        and all(_rate(interval.get(k)) for k in ("eer", "low", "high", "level"))
        and isinstance(interval.get("groups"), int)
        and not isinstance(interval.get("groups"), bool)
        and interval.get("unit", "utterances") in _INTERVAL_UNITS
    ):
        kept["eer_interval"] = {
            **{k: float(interval[k]) for k in ("eer", "low", "high", "level")},
            "groups": int(interval["groups"]),
            "unit": interval.get("unit", "utterances"),
        }
    return kept


def _rate(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def _finite(value: Any) -> Any:
    """``value`` with every non-finite number as None: a signature covers JSON, which has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dropped(reason: str) -> DroppedFigures:
    logger.info("dropping the validation figures of an uploaded bundle: %s", reason)
    return DroppedFigures(reason)
