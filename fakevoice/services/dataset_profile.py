"""Use-cases shared by the pages, the API and the CLI (this module never imports streamlit).

Datasets part: one dataset in detail, for whoever is about to train on it: its counts, owner and
kept shortcut audit (:func:`~fakevoice.services.datasets.dataset_overview`), what its build kept
for repeating it (``dataset.json``), how long its clips are, and how the training split would
divide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from fakevoice.datasets.catalog import read_dataset_info
from fakevoice.datasets.splits import TRAIN, UNUSED, VALID, SplitBy, split_assignments
from fakevoice.errors import FakeVoiceError
from fakevoice.services.datasets import DatasetOverview, dataset_manifest, dataset_overview
from fakevoice.store.records import Actor
from fakevoice.trainspec import TrainSpec


@dataclass(frozen=True)
class SplitCounts:
    """Items on each side of one split of a dataset.

    Attributes:
        train: Training items.
        valid: Validation items.
        unused: Items on neither side (``generator`` splits only).
    """

    train: int
    valid: int
    unused: int


@dataclass(frozen=True)
class DatasetDetails:
    """One dataset in detail.

    Attributes:
        overview: Counts per class, speaker and noise level, feature spec, owner and kept
            shortcut audit (:func:`~fakevoice.services.datasets.dataset_overview`).
        path: The dataset folder.
        build: ``dataset.json`` as the build wrote it (kind, created, seed, format version,
            sources...); ``{}`` for a dataset without one.
        clip_seconds: Shortest, median and longest distinct clip, seconds.
        valid_fraction: Share of groups :attr:`splits` validates on (training's default).
        split_seed: Seed of :attr:`splits` (training's default).
        splits: Per split mode (``utterance``, ``speaker``, ``generator``), the items each side
            of the split training makes by default gets, or why that mode cannot split this
            dataset.
    """

    overview: DatasetOverview
    path: Path
    build: dict[str, Any]
    clip_seconds: tuple[float, float, float]
    valid_fraction: float
    split_seed: int
    splits: dict[str, SplitCounts | str]


def dataset_details(name: str, *, actor: Actor | None) -> DatasetDetails:
    """One dataset in detail (see :class:`DatasetDetails`).

    Raises:
        NotFoundError: no dataset of that name that ``actor`` may see.
        DatasetError: its manifest is missing or corrupt.
    """
    overview = dataset_overview(name, actor=actor)
    path = Path(overview.info["path"])
    frame = dataset_manifest(path)
    durations = pd.to_numeric(frame.drop_duplicates("clip_path")["duration"], errors="coerce")
    durations = durations.dropna()
    clip_seconds = (
        (float(durations.min()), float(durations.median()), float(durations.max()))
        if len(durations)
        else (0.0, 0.0, 0.0)
    )
    defaults = TrainSpec(dataset=name)
    splits: dict[str, SplitCounts | str] = {}
    for mode in get_args(SplitBy):
        try:
            codes = split_assignments(frame, mode, defaults.valid_fraction, defaults.seed)
        except FakeVoiceError as exc:
            splits[mode] = str(exc)
            continue
        splits[mode] = SplitCounts(
            train=int(np.sum(codes == TRAIN)),
            valid=int(np.sum(codes == VALID)),
            unused=int(np.sum(codes == UNUSED)),
        )
    return DatasetDetails(
        overview=overview,
        path=path,
        build=read_dataset_info(path),
        clip_seconds=clip_seconds,
        valid_fraction=defaults.valid_fraction,
        split_seed=defaults.seed,
        splits=splits,
    )
