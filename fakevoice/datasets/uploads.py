"""Recordings uploaded to build a dataset: the build's spec, and the staging folder.

Uploaded files (loose audio of one speaker, and/or zip entries whose folders name speakers or
classes) are written under ``<data dir>/uploads/<random id>/<folder>/<file>`` with names made
here from the client's by :func:`~fakevoice.datasets.sources.safe_id` (which never yields a
path), in the layout :mod:`fakevoice.datasets.folder` reads. The build job reads that folder and
removes it when done.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fakevoice.archives import DamagedFileError, UploadedFile
from fakevoice.datasets.folder import AUDIO_SUFFIXES
from fakevoice.datasets.sources import safe_id
from fakevoice.errors import DatasetError, InvalidSpecError
from fakevoice.settings import get_settings

UPLOADS_DIR = "uploads"


@dataclass(frozen=True)
class DatasetBuildSpec:
    """What a dataset job builds (stored as the job's spec).

    Attributes:
        name: the new dataset's name (its folder under the dataset dir).
        source: the staging folder of the uploaded recordings (made by this module).
        labelled: whether the folders are classes (else speakers, spoofs generated).
        generators: spoof generators for speaker folders (none for labelled uploads).
        noise_levels: noise folder names, e.g. ``("snr_inf", "snr_10db")``.
        feature_spec: the spectrogram settings of the images.
        recordings: how many recordings were uploaded.
        skipped: what was left out of the upload, in words.
    """

    name: str
    source: str
    labelled: bool
    generators: tuple[str, ...]
    noise_levels: tuple[str, ...]
    feature_spec: dict[str, Any]
    recordings: int
    skipped: tuple[str, ...] = field(default=())
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "dataset", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetBuildSpec:
        try:
            return cls(
                name=str(data["name"]),
                source=str(data["source"]),
                labelled=bool(data["labelled"]),
                generators=tuple(str(g) for g in data["generators"]),
                noise_levels=tuple(str(n) for n in data["noise_levels"]),
                feature_spec=dict(data["feature_spec"]),
                recordings=int(data["recordings"]),
                skipped=tuple(str(s) for s in data.get("skipped", ())),
                seed=int(data.get("seed", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSpecError(f"This dataset job's spec is damaged ({exc}).") from exc


def uploads_dir() -> Path:
    """Where uploaded recordings wait for their build: ``<data dir>/uploads``."""
    return get_settings().data_dir / UPLOADS_DIR


def remove_upload(spec: DatasetBuildSpec) -> None:
    """Delete a build's staged recordings (only a folder under the uploads dir is touched)."""
    folder = Path(spec.source)
    if folder.parent.resolve() == uploads_dir().resolve():
        shutil.rmtree(folder, ignore_errors=True)


def stage_entries(
    entries: list[UploadedFile], staging: Path, speaker: str
) -> tuple[int, list[str]]:
    """Write the audio entries under ``staging/<folder>/<file>``, each read and written in chunks
    (an upload is never whole in memory).

    Args:
        entries: the upload, zips listed as their entries (see
            :func:`fakevoice.batch.open_upload`).
        staging: a new folder for this upload.
        speaker: the speaker of the loose files (zip entries name theirs by their folder).

    Returns:
        (files written, notes on what was left out).

    Raises:
        InvalidSpecError: loose files without a speaker name.
        DatasetError: no audio file at all.
        FileTooLargeError: the upload expands past its limits while it is written.
    """
    loose_folder = safe_id(speaker.strip()) if speaker.strip() else None
    zipped = [e for e in entries if e.path is not None]
    strip_root = _common_root(zipped)
    written = 0
    notes: list[str] = []
    not_audio = 0
    taken: set[str] = set()
    for entry in entries:
        if entry.error is not None:
            notes.append(f"{entry.name}: {entry.error}")
            continue
        suffix = PurePosixPath(entry.path or entry.name).suffix.lower()
        if suffix not in AUDIO_SUFFIXES:
            not_audio += 1
            continue
        if entry.path is None:
            if loose_folder is None:
                raise InvalidSpecError(
                    "Give the speaker's name for the audio files that are not in a zip "
                    "(zips name their speakers by their folders)."
                )
            folder, inner = loose_folder, PurePosixPath(entry.name)
        else:
            parts = PurePosixPath(entry.path).parts[strip_root:]
            if len(parts) < 2:
                notes.append(f"{entry.name}: not in a folder; the zip's folders name the speakers")
                continue
            folder, inner = safe_id(parts[0]), PurePosixPath(*parts[1:])
        stem = safe_id(inner.with_suffix("").as_posix().replace("/", "-"), 64)
        target = f"{folder}/{stem}{suffix}"
        while target in taken:  # the same name in two places of the upload
            stem = safe_id(f"{stem}+", 64)
            target = f"{folder}/{stem}{suffix}"
        path = staging / folder / f"{stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            entry.save(path)
        except DamagedFileError as exc:
            notes.append(f"{entry.name}: {exc}")
            continue
        taken.add(target)
        written += 1
    if not_audio:
        notes.append(
            f"{not_audio} files without an audio file name ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    if written == 0:
        raise DatasetError("The upload holds no audio file to build a dataset from.")
    return written, notes


def _common_root(entries: list[UploadedFile]) -> int:
    """1 when every audio file of the zips lies inside one shared top folder (a zipped folder
    of speaker folders), else 0."""
    paths = [
        PurePosixPath(e.path)
        for e in entries
        if e.path and PurePosixPath(e.path).suffix.lower() in AUDIO_SUFFIXES
    ]
    tops = {p.parts[0] for p in paths}
    return 1 if len(tops) == 1 and all(len(p.parts) > 2 for p in paths) else 0
