"""Why a model decided as it did on a clip (:mod:`fakevoice.explain`), for the pages, the API and
the CLI. Explaining is not a verdict and logs none; an explanation of a verdict can be kept with
it in its owner's history (:func:`keep_explanation`), where its reports show it again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fakevoice import store
from fakevoice.audio import AudioInfo, load_audio
from fakevoice.errors import InvalidSpecError
from fakevoice.explain import Explanation, explain, window_count
from fakevoice.services.verdicts import detector_for, get_model
from fakevoice.store.records import Actor, AnalysisRecord, ModelRecord


@dataclass(frozen=True)
class ExplainedClip:
    explanation: Explanation
    info: AudioInfo
    model: ModelRecord


def explain_clip(
    actor: Actor,
    model: int | ModelRecord,
    source: Path | bytes,
    *,
    window: int | None = None,
) -> ExplainedClip:
    """Decode a clip and explain the model's decision on one of its windows.

    Args:
        model: The model's id, or its record as just read for this actor.
        source: The audio as a server-side path or the uploaded bytes.
        window: Which window of the verdict's timeline (from 0); default: the most
            machine-like one.

    Raises:
        AudioError and its kin: The audio cannot be used.
        NotFoundError: The actor may not use the model.
        InvalidSpecError: The clip has no such window.
    """
    if not isinstance(model, ModelRecord):
        model = get_model(actor, model)
    detector = detector_for(model)
    audio = load_audio(source, detector.sample_rate)
    if window is not None:
        count = window_count(detector, audio.samples.size)
        if not 0 <= window < count:
            raise InvalidSpecError(
                f"The clip has {count} window(s) for this model: give a window from 0 to "
                f"{count - 1}, or none for the most machine-like one."
            )
    explanation = explain(detector, audio.samples, detector.sample_rate, window=window)
    return ExplainedClip(explanation, audio.info, model)


def keep_explanation(actor: Actor, analysis_id: int, explanation: Explanation) -> AnalysisRecord:
    """Keep ``explanation`` (bands, time slices, window, and the heatmap at
    :data:`~fakevoice.explain.KEPT_HEATMAP_CELLS` cells a side) with verdict ``analysis_id`` of
    the actor's history, replacing any kept before.

    Raises:
        NotFoundError: no such verdict of the actor's (a history is personal).
    """
    with store.session_scope() as session:
        return store.keep_explanation(session, actor, analysis_id, explanation.to_dict())
