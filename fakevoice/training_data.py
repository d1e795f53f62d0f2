"""Training data: the items a spec selects, split into train and validation, as fastai loaders.

:func:`prepare_data` reads a built dataset's manifest, keeps the items the spec selects (noise
levels, speakers, classes), splits them (grouped and seeded, :mod:`fakevoice.datasets.splits`) and
labels them for the task; :func:`make_dataloaders` wraps the split in fastai ``DataLoaders`` of
images or waveforms, with the spec's augmentations on the training side only.

Only the last two functions need torch and fastai, and they import them: choosing and counting a
selection (the CLI, the Train page, a submitted run's check) then costs pandas, not seconds of
imports.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from fakevoice.datasets.manifest import read_manifest
from fakevoice.datasets.splits import split_masks
from fakevoice.errors import DatasetError, InvalidSpecError
from fakevoice.processes import die_with_parent
from fakevoice.trainspec import TrainSpec

if TYPE_CHECKING:
    import torch
    from fastai.data.core import DataLoaders

BONAFIDE = "bonafide"
SPOOF = "spoof"


@dataclass
class PreparedData:
    """The selected items split into train and validation, with class names and labels."""

    dataset_dir: Path
    train: pd.DataFrame
    valid: pd.DataFrame
    class_names: list[str]
    train_labels: list[int]
    valid_labels: list[int]
    feature_spec: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid)}


def dataset_path(root: Path, name: str) -> Path:
    """The folder of dataset ``name`` under ``root``; only plain folder names are accepted."""
    if not name or "/" in name or "\\" in name or name in {".", ".."} or name.startswith("."):
        raise InvalidSpecError(f"dataset must be the name of a built dataset; got {name!r}")
    path = root / name
    if not (path / "manifest.csv").is_file():
        raise DatasetError(
            f"There is no built dataset named '{name}'. "
            "Build one with `fakevoice dataset build-demo` or pick another."
        )
    return path


def select_items(manifest: pd.DataFrame, spec: TrainSpec) -> pd.DataFrame:
    """Keep the items matching the spec's noise levels, speakers and classes.

    Raises:
        InvalidSpecError: a wanted value the whole dataset lacks (its values named). A value the
            dataset has but the other choices leave without items is no error here (``piper``
            with a speaker it never copied): the selection's own checks say what it holds.
        DatasetError: nothing is selected.
    """
    frame = manifest
    for column, wanted in (
        ("noise", spec.noise_levels),
        ("speaker", spec.speakers),
        ("class", spec.classes),
    ):
        if wanted is None:
            continue
        # Against the whole dataset, not what the earlier choices left: a class that exists was
        # called "unknown in this dataset" when the chosen speakers had none of it.
        known = set(manifest[column].astype(str))
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InvalidSpecError(
                f"unknown {column} value(s) in this dataset: {', '.join(unknown[:NAMED])}"
                f"{_more(len(unknown))}; it has {', '.join(sorted(known)[:NAMED])}"
                f"{_more(len(known))}"
            )
        frame = frame[frame[column].astype(str).isin(wanted)]
    if frame.empty:
        raise DatasetError(
            "The selection is empty: choose at least one noise level, speaker and class."
        )
    return frame.reset_index(drop=True)


NAMED = 12  # values an unknown-value message names (an imported set has hundreds of speakers)


def _more(count: int) -> str:
    return f" and {count - NAMED} more" if count > NAMED else ""


def class_names_for(frame: pd.DataFrame, task: str) -> list[str]:
    """``[bonafide, spoof]`` for binary tasks, ``[bonafide, <generators...>]`` for multi-class."""
    if task == "binary":
        return [BONAFIDE, SPOOF]
    generators = sorted(c for c in frame["class"].astype(str).unique() if c != BONAFIDE)
    return [BONAFIDE, *generators]


def _labels(frame: pd.DataFrame, class_names: list[str], task: str) -> list[int]:
    if task == "binary":
        return [0 if c == BONAFIDE else 1 for c in frame["class"].astype(str)]
    index = {name: i for i, name in enumerate(class_names)}
    return [index[c] for c in frame["class"].astype(str)]


def prepare_data(spec: TrainSpec, dataset_root: Path) -> PreparedData:
    """Read the manifest, select items and split them (grouped and seeded)."""
    dataset_dir = dataset_path(dataset_root, spec.dataset)
    manifest = read_manifest(dataset_dir)
    frame = select_items(manifest, spec)
    classes_present = set(frame["class"].astype(str))
    if BONAFIDE not in classes_present or len(classes_present) < 2:
        raise DatasetError(
            "The selection needs bona fide items and at least one generator's items to train a "
            f"detector; it has only: {', '.join(sorted(classes_present))}."
        )
    # In generator mode some rows belong to neither side (held-out spoofs of training utterances,
    # seen-generator spoofs of validation utterances); they are left out, not validated on.
    train_mask, valid_mask = split_masks(
        frame,
        by=spec.split_by,
        valid_fraction=spec.valid_fraction,
        seed=spec.seed,
        holdout=list(spec.holdout) if spec.holdout else None,
    )
    train, valid = (
        frame[np.asarray(train_mask, dtype=bool)].reset_index(drop=True),
        frame[np.asarray(valid_mask, dtype=bool)].reset_index(drop=True),
    )
    if len(train) < 2 or len(valid) < 1:
        raise DatasetError(
            f"The selection has too few items to split ({len(frame)} items): choose more."
        )
    class_names = class_names_for(frame, spec.task)
    feature_spec = dataset_feature_spec(dataset_dir)
    return PreparedData(
        dataset_dir=dataset_dir,
        train=train,
        valid=valid,
        class_names=class_names,
        train_labels=_labels(train, class_names, spec.task),
        valid_labels=_labels(valid, class_names, spec.task),
        feature_spec=feature_spec,
    )


def dataset_feature_spec(dataset_dir: Path) -> dict[str, Any]:
    """The feature spec in a dataset's ``dataset.json`` (empty when it names none)."""
    info_path = dataset_dir / "dataset.json"
    if not info_path.is_file():
        return {}
    info = json.loads(info_path.read_text())
    spec = info.get("feature_spec") or {}
    return dict(spec)


MAX_AUTO_LOADER_WORKERS = 8  # beyond this, a GPU run's input rarely gets faster


def loader_workers(setting: int | Literal["auto"], device: torch.device) -> int:
    """Data-loader worker processes for a run on ``device``: the operator's number, or (auto) none
    on a CPU, where the training's own threads want every core and extra processes only compete
    with them, and on CUDA one per usable core but the training process's, at most
    :data:`MAX_AUTO_LOADER_WORKERS`."""
    if setting != "auto":
        return setting
    if device.type != "cuda":
        return 0
    return max(0, min(MAX_AUTO_LOADER_WORKERS, len(os.sched_getaffinity(0)) - 1))


def make_dataloaders(
    data: PreparedData, spec: TrainSpec, device: torch.device, num_workers: int = 0
) -> DataLoaders:
    """fastai DataLoaders over the prepared split (augmentations on the training side only).

    With ``num_workers`` above 0 each loader decodes and augments its items in that many worker
    processes, forked (:mod:`fakevoice.forked_loading`) anew every epoch: fastai hands them the
    epoch's order of items, so its workers cannot persist; the items' caches are shared with
    them instead (:mod:`fakevoice.datasets.item_cache`). Each worker augments with a stream of its own
    (:func:`start_loader_worker`). Batches are pinned for a CUDA ``device``.
    """
    from fastai.data.core import DataLoaders

    from fakevoice.datasets.loaders import ImageItems, WaveformItems
    from fakevoice.forked_loading import ForkingDataLoader

    if spec.input_kind == "waveform":
        train_ds: ImageItems | WaveformItems = WaveformItems(
            data.train,
            data.dataset_dir,
            data.train_labels,
            spec.clip_samples,
            spec.augment,
            spec.seed,
        )
        valid_ds: ImageItems | WaveformItems = WaveformItems(
            data.valid, data.dataset_dir, data.valid_labels, spec.clip_samples, None, spec.seed
        )
    else:
        train_ds = ImageItems(
            data.train, data.dataset_dir, data.train_labels, spec.augment, spec.seed
        )
        valid_ds = ImageItems(data.valid, data.dataset_dir, data.valid_labels, None, spec.seed)
    loading: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": device.type == "cuda",
        "wif": start_loader_worker,
    }
    batch_size = min(spec.batch_size, len(train_ds))
    train_dl = ForkingDataLoader(
        train_ds, bs=batch_size, shuffle=True, drop_last=len(train_ds) > batch_size, **loading
    )
    valid_dl = ForkingDataLoader(valid_ds, bs=spec.batch_size, shuffle=False, **loading)
    return DataLoaders(train_dl, valid_dl, device=device)


def start_loader_worker() -> None:
    """fastai's hook in each new data-loader worker (after it gave the worker one torch thread
    and seeded the global generators with the worker's seed): the worker's copy of the items
    augments with a stream of its own, and the worker dies with the training process that forked
    it (torch's own check of its parent comes only every 5 s)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is None:  # not in a worker
        return
    die_with_parent(signal.SIGKILL)
    # fastai's loader runs each worker over a stand-in (info.dataset) whose `d` is the fastai
    # DataLoader; its `dataset` is the worker's copy of our items.
    items = info.dataset.d.dataset  # type: ignore[attr-defined]
    items.seed_worker(info.seed)


def class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 (absent classes get weight 1)."""
    import torch

    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 1.0)
    weights = weights / weights.mean()
    return torch.tensor(weights, dtype=torch.float32)
