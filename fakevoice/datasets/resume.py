"""Builds that continue where they stopped: the markers under a dataset folder's ``.progress/``.

``build.json`` names the build a folder holds (a fingerprint of its plan and recordings, and when
it started); each finished unit (a recording) writes its manifest rows to ``<unit>.json``
atomically. A build run again with the same arguments reads them back and builds only the rest;
with other arguments it refuses the folder rather than mixing two builds. ``build.json`` also says
which renderer made the finished units' images (:data:`~fakevoice.features.RENDER_VERSION`), so a
build continued by newer code renders them again rather than mixing two kinds of images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from fakevoice.datasets.manifest import BONAFIDE, write_text_atomic
from fakevoice.datasets.sources import Recording
from fakevoice.datasets.units import Plan, UnitResult
from fakevoice.errors import DatasetError
from fakevoice.features import RENDER_VERSION, render_version_of

PROGRESS_DIR = ".progress"
_BUILD_FILE = "build.json"


def unit_name(recording: Recording) -> str:
    """The unit's name: the recording's key, with its class for a labelled machine clip."""
    return recording.key if recording.label == BONAFIDE else f"{recording.key}.{recording.label}"


def _fingerprint(plan: Plan, recordings: Sequence[Recording], kind: str) -> str:
    payload = json.dumps(
        [kind, asdict(plan), [[unit_name(r), str(r.path)] for r in recordings]], default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def claim_folder(out_dir: Path, plan: Plan, recordings: Sequence[Recording], kind: str) -> str:
    """Start or continue a build in ``out_dir``; returns the creation time of the build."""
    fingerprint = _fingerprint(plan, recordings, kind)
    marker = out_dir / PROGRESS_DIR / _BUILD_FILE
    if marker.is_file():
        earlier = json.loads(marker.read_text(encoding="utf-8"))
        if earlier.get("fingerprint") == fingerprint:
            return str(earlier["created"])
        raise DatasetError(
            f"'{out_dir}' holds a build with other settings; choose another folder or delete it."
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DatasetError(
            f"'{out_dir}' already exists and is not an unfinished build; choose an empty folder."
        )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    write_text_atomic(
        marker,
        json.dumps(
            {"fingerprint": fingerprint, "created": created, "render_version": RENDER_VERSION}
        ),
    )
    return created


def finished_render_version(out_dir: Path) -> int:
    """The renderer that made the images of the build's finished units: 1 when ``build.json``
    does not say (a build begun before it did)."""
    marker = json.loads((out_dir / PROGRESS_DIR / _BUILD_FILE).read_text(encoding="utf-8"))
    return render_version_of(marker)


def mark_rendered(out_dir: Path) -> None:
    """Record that every finished unit's images are this code's (:data:`RENDER_VERSION`)."""
    marker = out_dir / PROGRESS_DIR / _BUILD_FILE
    data = json.loads(marker.read_text(encoding="utf-8"))
    write_text_atomic(marker, json.dumps({**data, "render_version": RENDER_VERSION}))


def marker_path(progress_dir: Path, name: str) -> Path:
    return progress_dir / f"{name}.json"


def read_marker(progress_dir: Path, recording: Recording) -> UnitResult | None:
    path = marker_path(progress_dir, unit_name(recording))
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return UnitResult(rows=list(data["rows"]), notes=list(data["notes"]))


def write_marker(progress_dir: Path, name: str, result: UnitResult) -> None:
    write_text_atomic(marker_path(progress_dir, name), json.dumps(asdict(result)))
