"""What datasets exist and what is in them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fakevoice.datasets.manifest import DATASET_INFO_NAME, MANIFEST_NAME, read_manifest
from fakevoice.errors import DatasetError
from fakevoice.features import RENDER_VERSION, render_version_of

logger = logging.getLogger(__name__)

COUNT_COLUMNS: tuple[str, ...] = ("noise", "speaker", "class")


@dataclass(frozen=True)
class DatasetSummary:
    """One built dataset, as listed.

    Attributes:
        name: Folder name.
        path: The dataset folder.
        items: Images (manifest rows).
        created: ISO time the build started, ``""`` if unknown.
        feature_spec: Spectrogram parameters (``FeatureSpec.to_dict()``), ``{}`` if unknown.
        kind: ``demo-small``, ``folder``, ``asvspoof2019-la``... ``""`` if unknown.
        classes: Class names present (``bonafide`` first).
        speakers: Number of speakers.
        noise_levels: Noise level names present.
        render_version: How its images were rendered (:data:`~fakevoice.features.RENDER_VERSION`;
            1 for a dataset that does not say).
        equalised: Its clips went through the shared channel (:func:`~fakevoice.datasets.channel.
            equalise`), whose 80 Hz high-pass leaves no offset to take off.
    """

    name: str
    path: Path
    items: int
    created: str
    feature_spec: dict[str, Any]
    kind: str = ""
    classes: tuple[str, ...] = ()
    speakers: int = 0
    noise_levels: tuple[str, ...] = field(default=())
    render_version: int = RENDER_VERSION
    equalised: bool = False

    @property
    def older_renderer(self) -> bool:
        """Whether its images were made by an older renderer than this code's and differ from
        those a model is given at verdict time. Version 1 left each clip's DC offset in; clips
        through the shared channel had none (their windows' own means, about 1e-4 of full scale,
        change nothing a model sees), so only datasets of clips kept as recorded (an ASVspoof
        import) are older in what counts."""
        return self.render_version < RENDER_VERSION and not self.equalised

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the path as a string, tuples as lists)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "items": self.items,
            "created": self.created,
            "feature_spec": dict(self.feature_spec),
            "kind": self.kind,
            "classes": list(self.classes),
            "speakers": self.speakers,
            "noise_levels": list(self.noise_levels),
            "render_version": self.render_version,
            "older_renderer": self.older_renderer,
        }


def dataset_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Item counts per noise level, speaker and class.

    Returns:
        Long frame with columns ``column`` (``noise``, ``speaker`` or ``class``), ``value`` and
        ``items``, sorted by column then value.
    """
    parts = [
        df[column]
        .astype(str)
        .value_counts()
        .sort_index()
        .rename_axis("value")
        .reset_index(name="items")
        .assign(column=column)
        for column in COUNT_COLUMNS
    ]
    return pd.concat(parts, ignore_index=True)[["column", "value", "items"]]


def count_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Counts for ``dataset.json``: items, clips, utterances, and per noise / speaker / class."""
    summary: dict[str, Any] = {
        "items": int(len(df)),
        "clips": int(df["clip_path"].nunique()),
        "utterances": int(df["utterance"].nunique()),
    }
    for column in COUNT_COLUMNS:
        counts = df[column].astype(str).value_counts().sort_index()
        summary[column] = {str(k): int(v) for k, v in counts.items()}
    return summary


def _class_order(classes: list[str]) -> tuple[str, ...]:
    return tuple(sorted(classes, key=lambda c: (c != "bonafide", c)))


def read_dataset_info(path: Path) -> dict[str, Any]:
    """``dataset.json`` of a dataset folder as its build wrote it
    (:func:`fakevoice.datasets.info.write_info`: kind, created, seed, feature_spec, generators,
    noise_levels, sources, counts, version...); ``{}`` when it has none or it cannot be read."""
    info_path = Path(path) / DATASET_INFO_NAME
    if not info_path.is_file():
        return {}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        logger.warning("Ignoring an unreadable %s in %s.", DATASET_INFO_NAME, path)
        return {}
    return info


def summarise_dataset(path: Path) -> DatasetSummary:
    """Summary of one dataset folder, from ``dataset.json`` when it has counts, else the manifest.

    Raises:
        DatasetError: the folder has no readable manifest.
    """
    path = Path(path)
    info = read_dataset_info(path)
    counts = info.get("counts")
    if not isinstance(counts, dict) or not all(c in counts for c in COUNT_COLUMNS):
        counts = count_summary(read_manifest(path))
    return DatasetSummary(
        name=path.name,
        path=path,
        items=int(counts["items"]),
        created=str(info.get("created", "")),
        feature_spec=dict(info.get("feature_spec") or {}),
        kind=str(info.get("kind", "")),
        classes=_class_order(list(counts["class"])),
        speakers=len(counts["speaker"]),
        noise_levels=tuple(sorted(counts["noise"])),
        render_version=render_version_of(info),
        equalised=info.get("equalised") is True,
    )


def list_datasets(root: Path) -> list[DatasetSummary]:
    """The datasets directly under ``root`` (folders with a ``manifest.csv``), by name.

    Unreadable datasets are left out with a logged warning; a missing root gives an empty list.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file()):
        try:
            found.append(summarise_dataset(folder))
        except DatasetError as error:
            logger.warning("Skipping dataset %s: %s", folder.name, error)
    return found
