"""Render a built dataset's clips again with other spectrogram features, as a new dataset.

Researchers compare features on the same audio: the new dataset keeps the source's clips (hard
links where the file system allows, copies otherwise), manifest, noise and attribution, and only its
images and its ``dataset.json`` feature spec change. Each image is made exactly as the builder made
it (:func:`~fakevoice.datasets.units.item_image`: the stored 16 kHz clip, the item's seeded noise,
then the features), so rendering with the source's own spec reproduces its images byte for byte,
or, for a source an older renderer made (``render_version`` in ``dataset.json``), makes them as
models are now given them.

The new dataset is written into a hidden sibling folder and renamed into place at the end: it
appears whole or not at all, and the source is only read.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fakevoice.datasets.manifest import (
    DATASET_INFO_NAME,
    MANIFEST_NAME,
    read_clip,
    read_manifest,
    write_text_atomic,
)
from fakevoice.datasets.noise import parse_noise_name
from fakevoice.datasets.shortcuts import SHORTCUTS_NAME
from fakevoice.datasets.units import item_image
from fakevoice.errors import DatasetError
from fakevoice.features import RENDER_VERSION, FeatureSpec
from fakevoice.png import save_png

logger = logging.getLogger(__name__)

CLIPS_DIR = "clips"
COPIED_FILES = ("ATTRIBUTION", SHORTCUTS_NAME)  # the same clips: the same audit


@dataclass(frozen=True)
class RenderReport:
    """What :func:`render_dataset` made."""

    source: str
    out_dir: Path
    images: int
    clips: int
    feature_spec: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "out_dir": str(self.out_dir),
            "images": self.images,
            "clips": self.clips,
            "feature_spec": self.feature_spec,
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> str:
        kind = self.feature_spec.get("kind")
        size = f"{self.feature_spec.get('image_height')}x{self.feature_spec.get('image_width')}"
        return (
            f"Rendered {self.images} {kind} images ({size} pixels) of {self.clips} clips from "
            f"'{self.source}' into {self.out_dir} in {self.seconds:.0f} s."
        )


def render_dataset(
    source_dir: Path,
    out_dir: Path,
    spec: FeatureSpec,
    *,
    workers: int = 0,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> RenderReport:
    """Make ``out_dir``: the dataset at ``source_dir`` with every image rendered from ``spec``.

    Args:
        source_dir: a built dataset (its ``manifest.csv`` and clips).
        out_dir: the new dataset's folder; must not exist yet.
        spec: the features of the new images.
        workers: parallel processes (0 = every core).
        progress: show a progress bar on stderr.
        on_progress: told ``(clips done, clips)`` after each clip.

    Raises:
        DatasetError: no dataset at ``source_dir``, ``out_dir`` already exists, or a clip is
            missing or unreadable (nothing is left behind then).
    """
    started = time.monotonic()
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if not (source_dir / MANIFEST_NAME).is_file():
        raise DatasetError(f"There is no built dataset at {source_dir}.")
    if out_dir.exists():
        raise DatasetError(
            f"{out_dir} already exists; choose another name for the rendered dataset."
        )
    frame = read_manifest(source_dir)
    staging = out_dir.parent / f".{out_dir.name}.rendering-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        clips = _link_clips(source_dir, staging, sorted(set(frame["clip_path"].astype(str))))
        images = render_items(
            source_dir,
            staging,
            frame,
            spec,
            workers=workers,
            progress=progress,
            on_progress=on_progress,
        )
        shutil.copy2(source_dir / MANIFEST_NAME, staging / MANIFEST_NAME)
        for name in COPIED_FILES:
            if (source_dir / name).is_file():
                shutil.copy2(source_dir / name, staging / name)
        _write_info(source_dir, staging, out_dir.name, spec)
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RenderReport(
        source_dir.name, out_dir, images, clips, spec.to_dict(), time.monotonic() - started
    )


def render_items(
    source_dir: Path,
    out_dir: Path,
    rows: pd.DataFrame,
    spec: FeatureSpec,
    *,
    workers: int = 0,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make the image of every manifest row of ``rows`` from its clip under ``source_dir``, into
    ``out_dir`` (which may be ``source_dir``: a build rendering its finished items again);
    returns how many. ``on_progress`` is told ``(clips done, clips)``."""
    groups = [
        (str(clip), [{str(k): str(v) for k, v in row.items()} for row in records])
        for clip, records in (
            (clip, group[["item", "noise", "image_path"]].to_dict("records"))
            for clip, group in rows.groupby("clip_path", sort=True)
        )
    ]
    return _render_all(str(source_dir), str(out_dir), groups, spec, workers, progress, on_progress)


def remove_unfinished(out_dir: Path) -> int:
    """Remove the staging folders that renders into ``out_dir`` left when their process died
    (``.<name>.rendering-<pid>`` beside it); returns how many. Only for a caller that holds the
    name (a render job), since a render in progress has one too."""
    out_dir = Path(out_dir)
    found = list(out_dir.parent.glob(f".{out_dir.name}.rendering-*"))
    for staging in found:
        shutil.rmtree(staging, ignore_errors=True)
    return len(found)


def _link_clips(source_dir: Path, staging: Path, relative: list[str]) -> int:
    """Hard-link (or copy) every clip into the staging folder; returns how many."""
    for name in relative:
        src, dst = source_dir / name, staging / name
        if not src.is_file():
            raise DatasetError(f"The dataset's clip {name} is missing; rebuild the dataset.")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(src, dst)
    return len(relative)


def _render_all(
    source: str,
    staging: str,
    groups: list[tuple[str, list[dict[str, str]]]],
    spec: FeatureSpec,
    workers: int,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
) -> int:
    from tqdm import tqdm

    from fakevoice.datasets.units import init_worker, worker_count

    count = worker_count(workers, len(groups))
    bar = tqdm(
        total=len(groups), desc="rendering", unit="clip", disable=not progress, file=sys.stderr
    )
    done = 0
    try:
        if count == 1:
            for finished, (clip, rows) in enumerate(groups, start=1):
                done += _render_clip(source, staging, clip, rows, spec)
                bar.update()
                if on_progress is not None:
                    on_progress(finished, len(groups))
            return done
        context = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(
            count, mp_context=context, initializer=init_worker
        )
        try:
            futures = [
                pool.submit(_render_clip, source, staging, clip, rows, spec)
                for clip, rows in groups
            ]
            for finished, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                done += future.result()
                bar.update()
                if on_progress is not None:
                    on_progress(finished, len(groups))  # may raise (a stopped job)
        finally:
            # A failure or a stop cancels the clips not yet started, instead of waiting for all.
            pool.shutdown(wait=True, cancel_futures=True)
        return done
    finally:
        bar.close()


def _render_clip(
    source: str, staging: str, clip: str, rows: list[dict[str, str]], spec: FeatureSpec
) -> int:
    """One clip's images, one per noise level, exactly as the builder renders them."""
    stored = read_clip(Path(source), clip)
    for row in rows:
        image = item_image(stored, parse_noise_name(row["noise"]), row["item"], spec)
        save_png(image, Path(staging) / row["image_path"])
    return len(rows)


def _write_info(source_dir: Path, staging: Path, name: str, spec: FeatureSpec) -> None:
    info_path = source_dir / DATASET_INFO_NAME
    try:
        info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.is_file() else {}
    except (OSError, ValueError):
        info = {}
    info.update(
        name=name,
        feature_spec=spec.to_dict(),
        rendered_from=source_dir.name,
        render_version=RENDER_VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_text_atomic(staging / DATASET_INFO_NAME, json.dumps(info, indent=2) + "\n")
