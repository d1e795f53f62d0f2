"""Stored models and verdicts: list and find models, score a clip, import AASIST, evaluate.

Every verdict asked through a page, the API or the CLI goes through :func:`score_clip`, which
decodes the audio (never trusting the file name), runs the model's own preprocessing through a
cached :class:`~fakevoice.inference.Detector`, and logs the verdict in the actor's history.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fakevoice import store
from fakevoice.artefacts import BUNDLE_MANIFEST, BUNDLE_WEIGHTS, MANIFEST_FORMAT, sha256_file
from fakevoice.audio import AudioInfo, load_audio
from fakevoice.cautions import model_cautions
from fakevoice.errors import InvalidSpecError, ModelFileError, NotFoundError
from fakevoice.inference import DEFAULT_THRESHOLD, DETECTORS, Detector, Verdict
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, AnalysisRecord, AnalysisSource, ModelRecord

CALIBRATED_FROM = "calibrated_from"
"""The key of a calibrated copy's metrics that names the model whose test it was fitted on."""


@dataclass(frozen=True)
class ScoredClip:
    """A verdict with what was decoded and the history entry it made.

    Attributes:
        verdict: The detector's answer.
        info: The decoded file's metadata (original rate, channels, duration, codec).
        analysis: The row logged in the actor's verdict history.
        model: The model that scored it.
    """

    verdict: Verdict
    info: AudioInfo
    analysis: AnalysisRecord
    model: ModelRecord


def get_model(actor: Actor, model_id: int) -> ModelRecord:
    """A model the actor owns, or a public one (NotFoundError otherwise)."""
    with store.session_scope(readonly=True) as session:
        return store.get_model(session, actor, model_id)


def list_models(
    actor: Actor,
    *,
    own: bool = False,
    public_only: bool = False,
    name: str = "",
    limit: int | None = None,
    offset: int = 0,
) -> list[ModelRecord]:
    """The actor's models and the public ones (only their own with ``own``, only public ones with
    ``public_only``), newest first; only those whose name holds ``name`` (any case); one page of
    them with ``limit`` (None: all) and ``offset``."""
    with store.session_scope(readonly=True) as session:
        return store.list_models(
            session,
            actor,
            own=own,
            public_only=public_only,
            name=name,
            limit=limit,
            offset=offset,
        )


def count_models(
    actor: Actor, *, own: bool = False, public_only: bool = False, name: str = ""
) -> int:
    """How many models :func:`list_models` lists with the same arguments."""
    with store.session_scope(readonly=True) as session:
        return store.count_models(session, actor, own=own, public_only=public_only, name=name)


def find_model(actor: Actor, key: str | int) -> ModelRecord:
    """A model by id or by name (the actor's own first, then public ones).

    Raises:
        NotFoundError: No visible model has that id or name.
    """
    text = str(key).strip()
    with store.session_scope(readonly=True) as session:
        found = store.find_model_by_key(session, actor, text)
    if found is None:
        raise model_not_found(text)
    return found


def model_not_found(key: str | int) -> NotFoundError:
    """The error for a model name or id that names no model the actor may use."""
    return NotFoundError(
        f"There is no model called {str(key).strip()[:80]!r} that you may use: name one of "
        "yours or a shared one, by its name or its id."
    )


def detector_for(model: ModelRecord) -> Detector:
    """The loaded detector of a stored model (cached; the files are checked against the store).

    Raises:
        ModelFileError: The model's files are missing or were changed since they were stored.
    """
    folder = Path(model.path)
    weights_hash = model.files.get(BUNDLE_WEIGHTS)
    if weights_hash is None:
        raise ModelFileError(f"Model {model.name!r} has no safe bundle to load.")
    key = f"{weights_hash}:{model.files.get(BUNDLE_MANIFEST, '')}"
    from fakevoice.models.registry import pick_device

    device = pick_device(server=get_settings().verdict_device, setting="FAKEVOICE_VERDICT_DEVICE")
    return DETECTORS.get(folder, key, device, verify=lambda: _verify_files(model))


def _verify_files(model: ModelRecord) -> None:
    folder = Path(model.path)
    for name in (BUNDLE_WEIGHTS, BUNDLE_MANIFEST):
        path = folder / name
        if not path.is_file():
            raise ModelFileError(f"The file {name} of model {model.name!r} is missing.")
        expected = model.files.get(name)
        if expected and sha256_file(path) != expected:
            raise ModelFileError(
                f"The file {name} of model {model.name!r} changed since it was stored; "
                "it will not be loaded."
            )


def check_threshold(threshold: float) -> None:
    """Refuse a verdict threshold outside 0.5 to 1 (checked once before a batch of files, so
    that each file does not fail alone with the same message).

    Raises:
        InvalidSpecError: The threshold is out of range (or NaN).
    """
    if not 0.5 <= threshold <= 1.0:
        raise InvalidSpecError(f"The threshold must be between 0.5 and 1; got {threshold}.")


def score_clip(
    actor: Actor,
    model: int | ModelRecord,
    source: Path | bytes,
    *,
    file_name: str,
    threshold: float = DEFAULT_THRESHOLD,
    origin: AnalysisSource = "page",
    quality: Sequence[str] | None = None,
) -> ScoredClip:
    """Decode a clip, score it with a model the actor may use, and log the verdict.

    Args:
        model: The model's id, or its record as :func:`find_model` or :func:`get_model` just
            returned it for this actor (which saves reading it again).
        source: The audio as a server-side path or the uploaded bytes.
        file_name: The client's name for it, kept for display only.
        threshold: Confidence below which the verdict is "inconclusive" (0.5 to 1).
        origin: Which face asked ("page", "api" or "cli").
        quality: The model's :func:`quality_cautions` for this actor, when the caller read them
            once for many clips (a batch: for a model without a validation EER of its own they
            read the actor's tests); read here when None.

    Raises:
        AudioError and its kin: The audio cannot be used (the message says why).
        NotFoundError: The model is not visible to the actor.
        InvalidSpecError: The threshold is out of range.
    """
    check_threshold(threshold)
    if not isinstance(model, ModelRecord):
        model = get_model(actor, model)
    detector = detector_for(model)
    audio = load_audio(source, detector.sample_rate)
    if isinstance(source, bytes):
        digest = hashlib.sha256(source).hexdigest()
    else:
        digest = sha256_file(source)
    verdict = detector.predict(audio, threshold)
    if weak := quality_cautions(actor, model) if quality is None else quality:
        verdict = replace(verdict, cautions=[*verdict.cautions, *weak])
    with store.session_scope() as session:
        analysis = store.add_analysis(
            session,
            actor,
            model_id=model.id,
            file_name=file_name,
            duration=audio.info.duration,
            sample_rate=audio.info.sample_rate,
            verdict=verdict.label,
            probabilities=verdict.probabilities,
            threshold=threshold,
            source=origin,
            file_sha256=digest,
            cautions=verdict.cautions,
            windows=[vars(window) for window in verdict.windows],
            typicality=verdict.typicality,
        )
    return ScoredClip(verdict=verdict, info=audio.info, analysis=analysis, model=model)


def quality_cautions(actor: Actor, model: ModelRecord) -> list[str]:
    """What the model's measured error rate says of its verdicts, as far as the actor can see
    (:func:`~fakevoice.cautions.model_cautions`): its own validation EER when it keeps one;
    nothing more when it was trained here; else what the newest of the actor's tests on a
    dataset that measured it found (for a calibrated copy its own test first, then the test of
    the model it copies, which it was fitted on), or that its error rate is unknown."""
    metrics = model.metrics
    if isinstance(metrics.get("eer"), int | float) or model.run_id is not None:
        return model_cautions(metrics, measured_here=True)
    from fakevoice.services.evaluation_jobs import latest_tests

    source = metrics.get(CALIBRATED_FROM)
    ids = [model.id, *([source] if isinstance(source, int) and source != model.id else [])]
    found = latest_tests(actor, ids)
    results = [found[model_id] for model_id in ids if model_id in found]
    tested = next((t for t in results if t.measures), results[0] if results else None)
    return model_cautions(metrics, tested=tested)


def models_dir() -> Path:
    """Where imported models are kept: ``<data dir>/models``."""
    return get_settings().data_dir / "models"


def import_aasist(actor: Actor, source: str | Path | bytes, name: str) -> ModelRecord:
    """Store an official AASIST / AASIST-L checkpoint as a model of the actor's.

    The checkpoint is read without unpickling arbitrary objects (tensors only), loaded strictly
    into our implementation, and saved as a safe bundle; the original file is not kept.

    Raises:
        ModelFileError: The file is not an AASIST or AASIST-L checkpoint.
        ConflictError: The actor already has a model with this name.
    """
    from fakevoice.models.checkpoints import load_official_aasist

    if isinstance(source, str):
        source = Path(source)
    if isinstance(source, Path) and not source.is_file():
        raise NotFoundError(f"There is no file at {source}.")
    variant, model = load_official_aasist(source)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "arch": variant,
        "task": "binary",
        # The official models output (spoof, bonafide): index 1 is bona fide.
        "class_names": ["spoof", "bonafide"],
        "bonafide_index": 1,
        "input_kind": "waveform",
        "feature_spec": None,
        "normalize": None,
        "sample_rate": 16000,
        "clip_samples": 64600,
        "source": "official AASIST checkpoint (ASVspoof 2019 LA)",
    }
    return store_bundle_as_model(actor, name, model, manifest)


def store_bundle_as_model(
    actor: Actor,
    name: str,
    model: torch.nn.Module,
    manifest: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
) -> ModelRecord:
    """Save ``model`` as a safe bundle in a new folder of its own and register it for ``actor``.

    ``manifest`` must be complete and checked (arch, class names, sample rate, clip samples,
    feature spec, source); ``metrics`` (default: the source alone) are what the store keeps of
    how good it is. On any failure, a taken name included, the folder is removed again.
    """
    from fakevoice.artefacts import save_bundle

    folder = models_dir() / uuid.uuid4().hex
    try:
        save_bundle(model, manifest, folder)
        files = {n: sha256_file(folder / n) for n in (BUNDLE_WEIGHTS, BUNDLE_MANIFEST)}
        with store.session_scope() as session:
            return store.add_model(
                session,
                actor,
                name=name,
                arch=manifest["arch"],
                class_names=manifest["class_names"],
                sample_rate=manifest["sample_rate"],
                clip_samples=manifest["clip_samples"],
                path=str(folder),
                files=files,
                feature_spec=manifest.get("feature_spec"),
                metrics=metrics if metrics is not None else {"source": manifest["source"]},
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
