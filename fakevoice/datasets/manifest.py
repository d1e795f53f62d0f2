"""The manifest of a built dataset: one row per spectrogram image, beside the images and clips.

Layout of a dataset folder (all paths in the manifest are relative to it, POSIX)::

    manifest.csv  dataset.json  ATTRIBUTION
    clips/<speaker>/<class>/<utterance>.wav          clean, equalised, 16 kHz PCM16
    <noise>/<speaker>/<class>/<item>.png             one image per clip and noise level

``item`` is ``f"{utterance}__{class}__{noise}"``. ``class`` is ``"bonafide"`` or a generator name;
``generator`` is ``""`` for bonafide. The waveform of an item for raw-waveform models is the clip
with the item's noise added, ``add_noise(clip, level, item_seed(item))``: the same noise as its image.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from fakevoice.datasets.noise import add_noise, item_seed, parse_noise_name
from fakevoice.errors import DatasetError, InvalidSpecError

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "item",
    "utterance",
    "speaker",
    "class",
    "generator",
    "noise",
    "clip_path",
    "image_path",
    "duration",
    "language",
    "source",
)
MANIFEST_NAME = "manifest.csv"
DATASET_INFO_NAME = "dataset.json"
OWNER_MARKER_NAME = "owner.json"  # a user's dataset says whose it is, should its record be lost
UNKNOWN_OWNER = 0  # no user has this id: a folder only administrators see
BONAFIDE = "bonafide"
CLIP_SAMPLE_RATE = 16000

_TEXT_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c != "duration")


def item_id(utterance: str, label: str, noise: str) -> str:
    """The item id of one image: ``f"{utterance}__{label}__{noise}"``."""
    return f"{utterance}__{label}__{noise}"


def utterance_of(item: str) -> str:
    """The utterance of an item id (:func:`item_id` read backwards)."""
    return item.rsplit("__", 2)[0]


def clip_path(speaker: str, label: str, utterance: str) -> str:
    """Relative POSIX path of a clip: ``clips/<speaker>/<class>/<utterance>.wav``."""
    return f"clips/{speaker}/{label}/{utterance}.wav"


def image_path(noise: str, speaker: str, label: str, item: str) -> str:
    """Relative POSIX path of an image: ``<noise>/<speaker>/<class>/<item>.png``."""
    return f"{noise}/{speaker}/{label}/{item}.png"


def manifest_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as a manifest frame with exactly :data:`MANIFEST_COLUMNS`, sorted by ``item``."""
    frame = pd.DataFrame(list(rows), columns=list(MANIFEST_COLUMNS))
    return frame.sort_values("item", kind="stable").reset_index(drop=True)


def read_manifest(dataset_dir: Path) -> pd.DataFrame:
    """Read ``manifest.csv`` of a dataset folder.

    Returns:
        Frame with :data:`MANIFEST_COLUMNS`; text columns as ``str`` (empty strings kept, never
        NaN), ``duration`` as float seconds.

    Raises:
        DatasetError: the folder has no manifest, or it cannot be read or lacks columns.
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"'{dataset_dir}' is not a dataset: it has no {MANIFEST_NAME}.")
    try:
        frame = pd.read_csv(
            path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values=[]
        )
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DatasetError(f"The manifest of '{dataset_dir}' cannot be read: {error}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"The manifest of '{dataset_dir}' is missing the columns {', '.join(missing)}."
        )
    try:
        frame["duration"] = pd.to_numeric(frame["duration"]).astype(float)
    except (ValueError, TypeError):
        raise DatasetError(
            f"The manifest of '{dataset_dir}' has a duration that is not a number."
        ) from None
    return frame[list(MANIFEST_COLUMNS)]


def write_manifest(dataset_dir: Path, rows: pd.DataFrame) -> None:
    """Write ``manifest.csv`` atomically (a temporary file renamed into place).

    Raises:
        DatasetError: ``rows`` lacks some of :data:`MANIFEST_COLUMNS`.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in rows.columns]
    if missing:
        raise DatasetError(f"Cannot write a manifest without the columns {', '.join(missing)}.")
    dataset_dir = Path(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        dataset_dir / MANIFEST_NAME,
        rows[list(MANIFEST_COLUMNS)].to_csv(index=False, float_format="%.4f", lineterminator="\n"),
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write a UTF-8 text file so that readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def validate_manifest(dataset_dir: Path, df: pd.DataFrame) -> list[str]:
    """Check a manifest against its folder.

    Checks: columns, unique items, item ids built from their parts, bonafide rows without a
    generator and spoof rows whose class is their generator, known noise names, paths inside the
    folder, and that every clip and image exists.

    Returns:
        One sentence per problem found; empty when the dataset is sound.
    """
    dataset_dir = Path(dataset_dir)
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        return [f"missing columns: {', '.join(missing)}"]
    problems: list[str] = []
    duplicated = df["item"][df["item"].duplicated()].unique()
    if len(duplicated):
        problems.append(f"{len(duplicated)} duplicate items, e.g. {duplicated[0]}")
    root = dataset_dir.resolve()
    seen_files: set[str] = set()
    for row in df.itertuples(index=False):
        values = dict(zip(MANIFEST_COLUMNS, row, strict=True))
        item, label, generator = values["item"], values["class"], values["generator"]
        if item != item_id(values["utterance"], label, values["noise"]):
            problems.append(f"{item}: id does not match its utterance, class and noise")
        if (label == BONAFIDE) != (generator == "") or (label != BONAFIDE and label != generator):
            problems.append(f"{item}: class '{label}' and generator '{generator}' disagree")
        try:
            parse_noise_name(values["noise"])
        except InvalidSpecError:
            problems.append(f"{item}: unknown noise level '{values['noise']}'")
        for column in ("clip_path", "image_path"):
            relative = values[column]
            if relative in seen_files and column == "clip_path":
                continue
            seen_files.add(relative)
            path = (dataset_dir / relative).resolve()
            if not path.is_relative_to(root):
                problems.append(f"{item}: {column} points outside the dataset folder")
            elif not path.is_file():
                problems.append(f"{item}: {column} {relative} does not exist")
    return problems


def read_clip(dataset_dir: Path, relative: str) -> np.ndarray:
    """Read a clip the builder wrote (16 kHz PCM16 wav) as ``(n,)`` float32.

    Raises:
        DatasetError: the file is missing, unreadable or not at 16 kHz mono.
    """
    path = Path(dataset_dir) / relative
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, OSError, RuntimeError) as error:
        raise DatasetError(f"The clip '{relative}' cannot be read: {error}") from None
    if rate != CLIP_SAMPLE_RATE or samples.ndim != 1:
        raise DatasetError(f"The clip '{relative}' is not 16 kHz mono, so it was not built here.")
    return np.asarray(samples, dtype=np.float32)


def load_item_waveform(dataset_dir: Path, row: Mapping[str, Any]) -> np.ndarray:
    """The waveform of one manifest row: its clip with the item's noise, as in its image.

    Args:
        dataset_dir: The dataset folder.
        row: A manifest row (needs ``item``, ``noise`` and ``clip_path``).

    Returns:
        ``(n,)`` float32 at 16 kHz.

    Raises:
        DatasetError: the clip cannot be read or the noise name is unknown.
    """
    clip = read_clip(dataset_dir, str(row["clip_path"]))
    try:
        level = parse_noise_name(str(row["noise"]))
    except InvalidSpecError as error:
        raise DatasetError(f"Item {row['item']}: {error}") from None
    return add_noise(clip, level, item_seed(str(row["item"])))


def write_owner_marker(folder: Path, owner_id: int) -> None:
    """Mark ``folder`` as the dataset of user ``owner_id`` (beside its manifest), so that it stays
    private should its record in the store not match it any more (the data folder moved). A
    folder that does not exist yet (a render recorded before it starts) is left to be marked
    when it does."""
    if not folder.is_dir():
        return
    tmp = folder / f".{OWNER_MARKER_NAME}.tmp"
    tmp.write_text(json.dumps({"owner_id": int(owner_id)}), encoding="utf-8")
    tmp.replace(folder / OWNER_MARKER_NAME)


def read_owner_marker(folder: Path) -> int | None:
    """The owner a dataset folder names (:func:`write_owner_marker`): None for a folder without a
    marker (a shared dataset), :data:`UNKNOWN_OWNER` for a marker that cannot be read (only
    administrators then see it: a damaged marker never makes a dataset everyone's)."""
    path = folder / OWNER_MARKER_NAME
    if not path.exists():
        return None
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))["owner_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return UNKNOWN_OWNER
    return owner if isinstance(owner, int) and not isinstance(owner, bool) else UNKNOWN_OWNER
