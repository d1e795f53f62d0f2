"""Batch scoring: several uploaded files or zips of them -> one verdict (or error) per clip.

Zips are opened in memory and expanded under limits from the settings: entries per batch
(``batch_max_files``), uncompressed bytes per batch (``batch_max_total_bytes``, counted while
decompressing, so a header that lies does not help) and expansion ratio (``batch_max_zip_ratio``):
a zip bomb refuses the whole batch. Entries with absolute or ``..`` paths, symbolic links and
encrypted entries are refused one by one. Client names are shown, never used as paths.
"""

from __future__ import annotations

import csv
import io
import logging
import stat
import zipfile
from dataclasses import dataclass, field

import pandas as pd

from fakevoice.errors import (
    FakeVoiceError,
    FileTooLargeError,
    InvalidSpecError,
    LimitExceededError,
)
from fakevoice.inference import DEFAULT_THRESHOLD
from fakevoice.settings import get_settings
from fakevoice.store.records import Actor, AnalysisSource

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
_CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# Folders that archivers add beside the real files; they hold no audio of the user's.
_ARCHIVE_NOISE = ("__MACOSX/",)


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


def display_name(name: str) -> str:
    """A client's file name made safe to show and store: printable, at most 255 characters."""
    text = "".join(c if c.isprintable() else "?" for c in name).strip()
    return (text or "unnamed")[:MAX_NAME_LENGTH]


def is_zip(data: bytes) -> bool:
    """Whether these bytes are a zip archive (judged by content, never by the name)."""
    return data.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC))


def read_batch(
    files: list[tuple[str, bytes]],
    *,
    max_files: int | None = None,
    max_total_bytes: int | None = None,
    what: str = "batch",
) -> list[BatchEntry]:
    """The clips of a batch: each file as it is, each zip expanded.

    Args:
        files: (client file name, bytes) per uploaded file.
        max_files, max_total_bytes: limits other than the batch settings' (dataset uploads).
        what: what the files are called in messages ("batch", "dataset upload").

    Returns:
        One entry per clip, in upload order (zip entries in archive order).

    Raises:
        LimitExceededError: more clips than ``batch_max_files``, or none at all.
        FileTooLargeError: more uncompressed bytes than ``batch_max_total_bytes``, or a zip
            that expands more than ``batch_max_zip_ratio`` times (a zip bomb).
    """
    settings = get_settings()
    budget = _Budget(
        settings.batch_max_files if max_files is None else max_files,
        settings.batch_max_total_bytes if max_total_bytes is None else max_total_bytes,
        what,
    )
    entries: list[BatchEntry] = []
    for name, data in files:
        if is_zip(data):
            entries.extend(
                _expand_zip(display_name(name), data, budget, settings.batch_max_zip_ratio)
            )
        else:
            budget.take(len(data))
            entries.append(BatchEntry(display_name(name), data))
    if not entries:
        raise LimitExceededError(f"The {what} holds no clip.")
    return entries


class _Budget:
    """What is left of the batch's clip count and uncompressed bytes."""

    def __init__(self, files: int, total_bytes: int, what: str = "batch") -> None:
        self.what = what
        self.files, self.total_bytes = files, total_bytes
        self.max_files, self.max_bytes = files, total_bytes

    def take(self, size: int, count: int = 1) -> None:
        self.files -= count
        if self.files < 0:
            raise LimitExceededError(
                f"A {self.what} may hold at most {self.max_files} clips; send the rest in "
                "another one."
            )
        self.spend(size)

    def spend(self, size: int) -> None:
        self.total_bytes -= size
        if self.total_bytes < 0:
            raise FileTooLargeError(
                f"The {self.what} expands to more than {_mib(self.max_bytes)} of audio; "
                "send it in smaller parts."
            )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"


def _expand_zip(zip_name: str, data: bytes, budget: _Budget, max_ratio: float) -> list[BatchEntry]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        return [BatchEntry(zip_name, error="This zip archive is damaged and cannot be opened.")]
    infos = [i for i in infos if not i.filename.startswith(_ARCHIVE_NOISE)]
    if len(infos) > budget.files:
        raise LimitExceededError(
            f"The zip {zip_name!r} holds {len(infos)} files; a {budget.what} may hold at most "
            f"{budget.max_files} clips."
        )
    declared = sum(i.file_size for i in infos)
    # The declared sizes are checked first (cheap), the real ones while decompressing.
    if declared > max_ratio * max(len(data), 1):
        raise FileTooLargeError(_bomb_message(zip_name, max_ratio))
    expanded = 0
    entries: list[BatchEntry] = []
    for info in infos:
        name = display_name(f"{zip_name}/{info.filename}")
        problem = _entry_problem(info)
        if problem is not None:
            budget.take(0)
            entries.append(BatchEntry(name, error=problem))
            continue
        path = info.filename.replace("\\", "/")
        budget.take(0)
        try:
            payload = _read_entry(archive, info, budget)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
            entries.append(BatchEntry(name, error="This file in the zip is damaged.", path=path))
            continue
        except NotImplementedError:
            entries.append(
                BatchEntry(
                    name, error="This file in the zip uses a compression we do not read.", path=path
                )
            )
            continue
        expanded += len(payload)
        if expanded > max_ratio * max(len(data), 1):
            raise FileTooLargeError(_bomb_message(zip_name, max_ratio))
        entries.append(BatchEntry(name, payload, path=path))
    return entries


def _bomb_message(zip_name: str, ratio: float) -> str:
    return (
        f"The zip {zip_name!r} expands more than {ratio:.0f} times its size and looks like a "
        "zip bomb; it was not opened."
    )


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry is refused, or None when it may be read."""
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "Refused: the file's path in the zip is absolute or leaves its folder (..)."
    if stat.S_ISLNK(info.external_attr >> 16):
        return "Refused: the entry is a symbolic link, not an audio file."
    if info.flag_bits & 0x1:
        return "Refused: the file is encrypted in the zip."
    return None


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """An entry's bytes, counted against the budget chunk by chunk as they are decompressed."""
    max_entry = get_settings().max_upload_bytes
    chunks: list[bytes] = []
    size = 0
    with archive.open(info) as handle:
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            budget.spend(len(chunk))
            if size > max_entry:
                raise FileTooLargeError(
                    f"The file {info.filename!r} in the zip is larger than {_mib(max_entry)}."
                )
            chunks.append(chunk)
    return b"".join(chunks)


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

    if not 0.5 <= threshold <= 1.0:
        raise InvalidSpecError(f"The threshold must be between 0.5 and 1; got {threshold}.")
    services.detector_for(services.get_model(actor, model_id))
    results: list[BatchResult] = []
    for entry in entries:
        if entry.data is None:
            results.append(BatchResult(entry.name, error=entry.error or "No data."))
            continue
        try:
            scored = services.score_clip(
                actor,
                model_id,
                entry.data,
                file_name=entry.name,
                threshold=threshold,
                origin=origin,
            )
        except FakeVoiceError as exc:
            results.append(BatchResult(entry.name, error=str(exc)))
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
    "label",
    "p_human",
    "generator",
    "duration",
    "sample_rate",
    "error",
    "file_sha256",
    "cautions",  # last: one text in the table (see results_frame)
)


def results_frame(results: list[BatchResult]) -> pd.DataFrame:
    """One row per clip: :data:`RESULT_COLUMNS` (``cautions`` as one text, each ending in a full
    stop), then ``p_<class>`` per class probability."""
    classes: list[str] = []
    for result in results:
        classes.extend(c for c in result.probabilities if c not in classes)
    rows = [
        {
            **{column: getattr(result, column) for column in RESULT_COLUMNS[:-1]},
            "cautions": " ".join(result.cautions),
            **{f"p_{c}": result.probabilities.get(c) for c in classes},
        }
        for result in results
    ]
    return pd.DataFrame(rows, columns=[*RESULT_COLUMNS, *(f"p_{c}" for c in classes)])


def spreadsheet_safe(value: object) -> object:
    # A cell starting with = + - @ is a formula to a spreadsheet; client names must not run.
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def results_csv(results: list[BatchResult]) -> str:
    """The results as CSV text (header row; file names cannot act as spreadsheet formulas)."""
    frame = results_frame(results)
    for column in ("name", "error", "generator", "label", "cautions"):
        frame[column] = frame[column].map(spreadsheet_safe)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL)
    return buffer.getvalue()
