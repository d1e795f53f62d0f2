"""Recordings from a user's folder, in one of two layouts.

* ``SRC/<speaker>/<file>``: human recordings of each speaker; spoofs are generated from them.
* ``SRC/<class>/<file>`` or ``SRC/<class>/<speaker>/<file>``: already labelled; ``<class>`` is
  ``bonafide``, ``spoof`` or a generator name. Files with the same name in different class folders
  are taken as the same utterance (a sentence and its spoofs), so a split keeps them together.

``labelled=None`` detects the layout: labelled when every subfolder is a class name. File and
folder names are never used as output paths: ids are sanitised and carry a hash of the original.
The speaker language is unknown (``"und"``), so TTS generators are skipped for folder imports.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fakevoice.datasets.generators import all_generators
from fakevoice.datasets.manifest import BONAFIDE
from fakevoice.datasets.sources import Recording, safe_id
from fakevoice.errors import DatasetError

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".opus", ".webm", ".m4a", ".mp4", ".aac", ".g722", ".oga"}
)
UNKNOWN_LANGUAGE = "und"
SPOOF = "spoof"


def class_names() -> frozenset[str]:
    """Folder names that mark a labelled layout: bonafide, spoof and every generator name."""
    return frozenset({BONAFIDE, SPOOF, *(g.name for g in all_generators())})


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )


def folder_recordings(src: Path, labelled: bool | None = None) -> tuple[list[Recording], bool]:
    """Find the recordings of a folder.

    Args:
        src: The folder.
        labelled: ``True`` for ``SRC/<class>/...``, ``False`` for ``SRC/<speaker>/...``,
            ``None`` to detect.

    Returns:
        The recordings (sorted, unique ids) and whether the layout is labelled.

    Raises:
        DatasetError: missing folder, no subfolders, no audio files, or a labelled folder with
            an unknown class name.
    """
    if not src.is_dir():
        raise DatasetError(f"'{src}' is not a folder.")
    subfolders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise DatasetError(
            f"'{src}' has no subfolders: put each speaker's recordings in SRC/<speaker>/, or "
            "labelled recordings in SRC/bonafide/ and SRC/<generator>/."
        )
    known = class_names()
    if labelled is None:
        labelled = all(p.name.lower() in known for p in subfolders)
    if labelled:
        unknown = [p.name for p in subfolders if p.name.lower() not in known]
        if unknown:
            raise DatasetError(
                f"Labelled folders must be named bonafide, spoof or a generator name; "
                f"'{unknown[0]}' is not."
            )
    recordings: list[Recording] = []
    seen: set[tuple[str, str]] = set()
    for folder in subfolders:
        label = folder.name.lower() if labelled else BONAFIDE
        for path in _audio_files(folder):
            inner = path.relative_to(folder)
            if labelled:
                speaker = safe_id(inner.parts[0]) if len(inner.parts) > 1 else "unknown"
            else:
                speaker = safe_id(folder.name)
            stem = inner.with_suffix("").as_posix()
            key = safe_id(f"{speaker}-{stem}", 64)
            while (key, label) in seen:  # the same name with another extension
                key = safe_id(f"{key}+", 64)
            seen.add((key, label))
            recordings.append(Recording(key, path, speaker, UNKNOWN_LANGUAGE, "folder", label))
    if not recordings:
        raise DatasetError(
            f"'{src}' has no audio files (looked for {', '.join(sorted(AUDIO_SUFFIXES))})."
        )
    if labelled and not any(r.label == BONAFIDE for r in recordings):
        logger.warning("The labelled folder %s has no bonafide recordings.", src)
    logger.info("Found %d recordings in %s (labelled: %s).", len(recordings), src, labelled)
    return recordings, labelled
