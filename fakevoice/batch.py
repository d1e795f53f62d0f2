"""Batch scoring: several uploaded files or zips of them -> one verdict (or error) per clip.

Zips are expanded by :mod:`fakevoice.archives` under limits from the settings: entries per batch
(``batch_max_files``), uncompressed bytes per batch (``batch_max_total_bytes``, counted while
decompressing, so a header that lies does not help) and expansion ratio (``batch_max_zip_ratio``):
a zip bomb refuses the whole batch. Entries with absolute or ``..`` paths, symbolic links and
encrypted entries are refused one by one. Client names are shown, never used as paths.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from fakevoice.archives import (
    DamagedFileError,
    Source,
    UploadedFile,
    display_name,
    is_zip,
    open_files,
)
from fakevoice.errors import FakeVoiceError, LimitExceededError
from fakevoice.inference import DEFAULT_THRESHOLD
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, AnalysisSource

logger = logging.getLogger(__name__)

__all__ = [
    "BatchEntry",
    "BatchResult",
    "display_name",
    "is_zip",
    "open_upload",
    "read_batch",
    "results_csv",
    "results_frame",
    "score_batch",
    "spreadsheet_safe",
]


@dataclass(frozen=True)
class BatchEntry:
    """One clip of a batch: its display name and bytes, or why it cannot be scored.

    ``path`` is the entry's path inside its zip (``/``-separated, checked for absolute and ``..``
    parts), None for a file uploaded as it is. It is for grouping only, never a file path here.
    """

    name: str
    data: bytes | None = field(repr=False, default=None)
    error: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """The verdict on one clip of a batch, or the error that stopped it (``label`` None then).

    Attributes:
        probabilities: class name -> probability (sums to 1).
        duration: seconds of the clip as uploaded; sample_rate: its original rate in Hz.
        file_sha256: hex sha256 of the clip's bytes (of the zip entry, for a zip).
        cautions: why the verdict deserves less trust (:mod:`fakevoice.cautions`).
        typicality: how familiar the clip was to the model, 0 to 1 (None: no reference kept).
        analysis_id: the verdict's entry in the user's history (its report, its outcome).
        error_code: the error's code (as the API's ``error.code``), with ``error``.
    """

    name: str
    label: str | None = None
    p_human: float | None = None
    generator: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    duration: float | None = None
    sample_rate: int | None = None
    error: str | None = None
    file_sha256: str | None = None
    cautions: list[str] = field(default_factory=list)
    analysis_id: int | None = None
    error_code: str | None = None
    typicality: float | None = None


def read_batch(
    files: list[tuple[str, bytes]],
    *,
    max_files: int | None = None,
    max_total_bytes: int | None = None,
    what: str = "batch",
) -> list[BatchEntry]:
    """The clips of a batch: each file as it is, each zip expanded (:mod:`fakevoice.archives`).

    Args:
        files: (client file name, bytes) per uploaded file.
        max_files, max_total_bytes: limits other than the batch settings'.
        what: what the files are called in messages.

    Returns:
        One entry per clip, in upload order (zip entries in archive order).

    Raises:
        LimitExceededError: more clips than ``batch_max_files``, or none at all.
        FileTooLargeError: more uncompressed bytes than ``batch_max_total_bytes``, or a zip
            that expands more than ``batch_max_zip_ratio`` times (a zip bomb).
    """
    entries: list[BatchEntry] = []
    for item in open_upload(files, max_files=max_files, max_total_bytes=max_total_bytes, what=what):
        if item.error is not None:
            entries.append(BatchEntry(item.name, error=item.error, path=item.path))
            continue
        try:
            entries.append(BatchEntry(item.name, item.read(), path=item.path))
        except DamagedFileError as exc:
            entries.append(BatchEntry(item.name, error=str(exc), path=item.path))
    return entries


def open_upload(
    files: Sequence[tuple[str, Source]],
    *,
    max_files: int | None = None,
    max_total_bytes: int | None = None,
    what: str = "batch",
) -> list[UploadedFile]:
    """The files of an upload, zips listed as their entries, under the batch settings' limits
    (or ``max_files`` / ``max_total_bytes``); none is read yet (see
    :func:`fakevoice.archives.open_files`).

    Raises:
        LimitExceededError: more files than allowed, or none at all.
        FileTooLargeError: more bytes than allowed, or a zip bomb.
    """
    settings = get_settings()
    opened = open_files(
        files,
        max_files=settings.batch_max_files if max_files is None else max_files,
        max_total_bytes=(
            settings.batch_max_total_bytes if max_total_bytes is None else max_total_bytes
        ),
        max_entry_bytes=settings.max_upload_bytes,
        max_zip_ratio=settings.batch_max_zip_ratio,
        what=what,
    )
    if not opened:
        raise LimitExceededError(f"The {what} holds no clip.")
    return opened


def score_batch(
    actor: Actor,
    model_id: int,
    entries: list[BatchEntry],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    origin: AnalysisSource = "api",
) -> list[BatchResult]:
    """Score every clip of a batch with one model; a clip's error never fails the batch.

    Every verdict is logged in the actor's history through
    :func:`fakevoice.services.score_clip`.

    Raises:
        NotFoundError: the model is not visible to the actor (nothing is scored).
        InvalidSpecError: the threshold is out of range (nothing is scored).
        ModelFileError: the model's files cannot be loaded (nothing is scored).
    """
    from fakevoice import services
    from fakevoice.services.verdicts import check_threshold, quality_cautions

    check_threshold(threshold)
    model = services.get_model(actor, model_id)
    services.detector_for(model)
    quality = quality_cautions(actor, model)  # once: it may read the actor's tests
    results: list[BatchResult] = []
    for entry in entries:
        if entry.data is None:
            results.append(
                BatchResult(entry.name, error=entry.error or "No data.", error_code="refused_entry")
            )
            continue
        try:
            scored = services.score_clip(
                actor,
                model,
                entry.data,
                file_name=entry.name,
                threshold=threshold,
                origin=origin,
                quality=quality,
            )
        except FakeVoiceError as exc:
            results.append(BatchResult(entry.name, error=str(exc), error_code=exc.code))
            continue
        verdict = scored.verdict
        results.append(
            BatchResult(
                name=entry.name,
                label=verdict.label,
                p_human=verdict.p_human,
                generator=verdict.generator,
                probabilities=dict(verdict.probabilities),
                duration=scored.info.duration,
                sample_rate=scored.info.sample_rate,
                file_sha256=scored.analysis.file_sha256,
                cautions=list(verdict.cautions),
                typicality=verdict.typicality,
                analysis_id=scored.analysis.id,
            )
        )
    logger.info(
        "batch of %d clips scored with model %d for user %d (%d errors)",
        len(results),
        model_id,
        actor.user_id,
        sum(r.error is not None for r in results),
    )
    return results


RESULT_COLUMNS = (
    "name",
    "verdict",  # BatchResult.label, named as the API's JSON and the history name it
    "p_human",
    "generator",
    "duration",
    "sample_rate",
    "error",
    "error_code",
    "file_sha256",
    "analysis_id",
    "typicality",
    "cautions",  # last: one text in the table (see results_frame)
)
WHOLE_NUMBER_COLUMNS = ("sample_rate", "analysis_id")  # blank for a clip without a verdict


def results_frame(results: list[BatchResult]) -> pd.DataFrame:
    """One row per clip: :data:`RESULT_COLUMNS` (``cautions`` as one text, each ending in a full
    stop), then ``p_<class>`` per class probability."""
    classes: list[str] = []
    for result in results:
        classes.extend(c for c in result.probabilities if c not in classes)
    rows = [
        {
            **{column: getattr(result, column) for column in RESULT_COLUMNS[2:-1]},
            "name": result.name,
            "verdict": result.label,
            "cautions": " ".join(result.cautions),
            **{f"p_{c}": result.probabilities.get(c) for c in classes},
        }
        for result in results
    ]
    frame = pd.DataFrame(rows, columns=[*RESULT_COLUMNS, *(f"p_{c}" for c in classes)])
    for column in WHOLE_NUMBER_COLUMNS:  # 16000, not 16000.0, beside an empty cell
        frame[column] = frame[column].astype("Int64")
    return frame


def spreadsheet_safe(value: object) -> object:
    # A cell starting with = + - @ is a formula to a spreadsheet; client names must not run.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def results_csv(results: list[BatchResult]) -> str:
    """The results as CSV text (header row; file names cannot act as spreadsheet formulas)."""
    frame = results_frame(results)
    for column in ("name", "error", "generator", "verdict", "cautions"):
        frame[column] = frame[column].map(spreadsheet_safe)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue()
