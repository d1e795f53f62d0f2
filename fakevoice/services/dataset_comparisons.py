"""Side-by-side comparisons of one utterance as the human said it and as each spoof generator
made it, at one noise level: the spectrogram image and the audio of every class.

Dataset names are checked, and manifests read, by :mod:`fakevoice.services.datasets`; every
function takes the acting user (``actor``; None for a visitor who is not signed in) and reports a
dataset they may not see as not existing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from fakevoice.audio import encode_audio
from fakevoice.datasets.manifest import BONAFIDE, CLIP_SAMPLE_RATE, load_item_waveform
from fakevoice.datasets.noise import noise_sort_key
from fakevoice.errors import DatasetError, NotFoundError
from fakevoice.services.datasets import dataset_manifest, dataset_path, ordered_classes
from fakevoice.store.records import Actor


@dataclass(frozen=True)
class Panel:
    """One class's version of an utterance at one noise level.

    Attributes:
        label: ``"bonafide"`` or the generator name.
        item: Manifest item id.
        image_png: The spectrogram image file, PNG bytes.
        audio_wav: The waveform the image was made from (clip plus the item's noise), 16 kHz
            PCM16 WAV bytes.
        duration: Clip length in seconds.
    """

    label: str
    item: str
    image_png: bytes = field(repr=False)
    audio_wav: bytes = field(repr=False)
    duration: float


@dataclass(frozen=True)
class Comparison:
    """An utterance as the human said it and as each generator made it, at one noise level.

    ``panels`` holds the bonafide panel first (when the dataset has one for this utterance),
    then one per generator, alphabetically.
    """

    dataset: str
    utterance: str
    speaker: str
    language: str
    noise: str
    panels: list[Panel]


def _pick_noise(frame: pd.DataFrame, noise: str | None) -> str:
    levels = sorted(frame["noise"].unique(), key=noise_sort_key)
    if not levels:
        raise DatasetError("This dataset's manifest has no items.")
    if noise is None:
        return str(levels[0])
    if noise not in levels:
        raise NotFoundError(
            f"This dataset has no noise level {noise!r}; it has {', '.join(levels)}."
        )
    return noise


def utterances(name: str, noise: str | None = None, *, actor: Actor | None) -> list[str]:
    """Utterance ids that have a bonafide item at ``noise`` (default: the cleanest level), sorted.

    Raises:
        NotFoundError: Unknown dataset or noise level.
    """
    frame = dataset_manifest(dataset_path(name, actor=actor))
    level = _pick_noise(frame, noise)
    rows = frame[(frame["noise"] == level) & (frame["class"] == BONAFIDE)]
    return sorted(rows["utterance"].unique())


def _read_bytes(folder: Path, relative: str, what: str) -> bytes:
    path = folder / relative
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"The {what} {relative} of this dataset is missing or unreadable; rebuild the dataset."
        ) from exc


def _panel(folder: Path, row: Mapping[str, Any]) -> Panel:
    waveform = load_item_waveform(folder, row)
    duration = float(row["duration"])  # read_manifest parses it as a number
    return Panel(
        label=str(row["class"]),
        item=str(row["item"]),
        image_png=_read_bytes(folder, str(row["image_path"]), "image"),
        audio_wav=encode_audio(waveform, CLIP_SAMPLE_RATE, "wav"),
        duration=0.0 if math.isnan(duration) else duration,
    )


def _comparison(
    name: str, folder: Path, frame: pd.DataFrame, utterance: str, noise: str
) -> Comparison:
    rows = frame[(frame["utterance"] == utterance) & (frame["noise"] == noise)]
    if rows.empty:
        raise NotFoundError(f"This dataset has no utterance {utterance!r} at noise level {noise}.")
    records = cast(list[dict[str, Any]], rows.to_dict("records"))
    by_class = {str(row["class"]): row for row in records}
    first = by_class.get(BONAFIDE, records[0])
    panels = [_panel(folder, by_class[label]) for label in ordered_classes(set(by_class))]
    return Comparison(
        dataset=name,
        utterance=utterance,
        speaker=str(first["speaker"]),
        language=str(first["language"]),
        noise=noise,
        panels=panels,
    )


def compare_utterance(
    name: str, utterance: str, noise: str | None = None, *, actor: Actor | None
) -> Comparison:
    """One utterance at one noise level: the bonafide panel and each generator's.

    Args:
        name: Dataset name.
        utterance: Utterance id (see :func:`utterances`).
        noise: Noise name such as ``"snr_20db"``; default the cleanest level.

    Raises:
        NotFoundError: Unknown dataset, utterance or noise level.
        DatasetError: A file the manifest names is missing.
    """
    folder = dataset_path(name, actor=actor)
    frame = dataset_manifest(folder)
    level = _pick_noise(frame, noise)
    return _comparison(name, folder, frame, utterance, level)


def sample_items(
    name: str, n: int = 1, seed: int = 0, *, noise: str | None = None, actor: Actor | None
) -> list[Comparison]:
    """``n`` random utterances, each compared side by side (bonafide vs every generator).

    Utterances are drawn, without replacement and reproducibly for a given ``seed``, from those
    with a bonafide item and the most classes at that noise level, so a comparison shows every
    generator whenever the dataset allows it.

    Args:
        name: Dataset name.
        n: How many utterances (fewer when the dataset has fewer).
        seed: Random seed of the draw.
        noise: Noise name; default the cleanest level.

    Returns:
        Up to ``n`` comparisons, in draw order.
    """
    if n < 1:
        return []
    folder = dataset_path(name, actor=actor)
    frame = dataset_manifest(folder)
    level = _pick_noise(frame, noise)
    at_level = frame[frame["noise"] == level]
    has_bonafide = set(at_level.loc[at_level["class"] == BONAFIDE, "utterance"])
    class_counts = (
        at_level[at_level["utterance"].isin(has_bonafide)].groupby("utterance")["class"].nunique()
    )
    if class_counts.empty:
        class_counts = at_level.groupby("utterance")["class"].nunique()
    best = sorted(class_counts[class_counts == class_counts.max()].index)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(best), size=min(n, len(best)), replace=False)
    return [_comparison(name, folder, frame, best[int(i)], level) for i in chosen]
