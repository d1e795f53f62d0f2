"""Torch datasets over a manifest: spectrogram images or raw waveforms, with training augmentations.

Both read the files the dataset builder wrote and go through :mod:`fakevoice.preprocess`, the same
path the detector uses at verdict time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fakevoice.datasets.item_cache import SharedItemCache
from fakevoice.datasets.manifest import load_item_waveform
from fakevoice.features import remove_dc
from fakevoice.preprocess import fit_length, image_to_tensor
from fakevoice.trainspec import AugmentSpec

# Per dataset object, shared by the data-loader workers it is read from (fakevoice.datasets.item_cache).
IMAGE_CACHE_BYTES = 1 << 30  # decoded training images (1 GiB)
WAVEFORM_CACHE_BYTES = 1 << 30  # items' waveforms with their noise (1 GiB)


def worker_rng(seed: int, worker_seed: int | None) -> np.random.Generator:
    """The augmentation stream of a dataset object: from its ``seed`` alone in the training
    process; in a data-loader worker, from the seed and the worker's own (torch gives each worker
    of each epoch another one, drawn from the training process's seeded generator), so workers
    neither repeat each other's augmentations nor their own from the epoch before."""
    if worker_seed is None:
        return np.random.default_rng(seed)
    return np.random.default_rng([seed, worker_seed])


def spec_augment(
    x: torch.Tensor, freq_masks: int, time_masks: int, fraction: float, rng: np.random.Generator
) -> torch.Tensor:
    """SpecAugment masking on a normalised image ``(3, H, W)``: masked cells are set to 0 (the
    mean), in place (``x`` is returned).

    Rows are frequency (low at the bottom), columns are time.
    """
    _, height, width = x.shape
    for _ in range(freq_masks):
        size = int(rng.integers(0, max(1, int(fraction * height)) + 1))
        start = int(rng.integers(0, max(1, height - size + 1)))
        x[:, start : start + size, :] = 0.0
    for _ in range(time_masks):
        size = int(rng.integers(0, max(1, int(fraction * width)) + 1))
        start = int(rng.integers(0, max(1, width - size + 1)))
        x[:, :, start : start + size] = 0.0
    return x


class ImageItems(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Spectrogram images of a manifest selection, as ``((3, H, W) float32, class index)``.

    Decoded images are kept in memory, up to ``cache_bytes`` (uint8, e.g. 150 kB per 224 x 224
    image) shared by the loader's workers, so later epochs skip the PNG decoding; the tensor
    conversion and the augmentations still run on every access, through the same
    :func:`~fakevoice.preprocess.image_to_tensor`.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        dataset_dir: Path,
        labels: list[int],
        augment: AugmentSpec | None = None,
        seed: int = 0,
        cache_bytes: int = IMAGE_CACHE_BYTES,
    ) -> None:
        self.paths = [str(dataset_dir / p) for p in frame["image_path"]]
        self.labels = list(labels)
        self.dataset_dir = dataset_dir
        self.augment = augment
        self.seed = seed
        self.rng = worker_rng(seed, None)
        self.cache = SharedItemCache(len(self.paths), cache_bytes, np.uint8)

    def __len__(self) -> int:
        return len(self.paths)

    def seed_worker(self, worker_seed: int) -> None:
        """Give this copy (in a data-loader worker) its own augmentation stream."""
        self.rng = worker_rng(self.seed, worker_seed)

    def new_empty(self) -> ImageItems:
        """An empty copy (fastai's export keeps the data pipeline, not the data)."""
        return ImageItems(pd.DataFrame({"image_path": []}), self.dataset_dir, [], None, self.seed)

    def decoded(self, index: int) -> np.ndarray:
        """Item ``index`` as ``(H, W, 3)`` uint8, decoded once while the cache has room (never to
        be changed: it may be the cache's own memory).

        The cache is one block (pages are only touched as they fill): thousands of separate small
        arrays among the per-item float temporaries fragmented the heap, and resident memory grew
        four times faster than the images themselves.
        """
        cached = self.cache.get(index)
        if cached is not None:
            return cached
        with Image.open(self.paths[index]) as im:
            image = np.asarray(im.convert("RGB"))
        return self.cache.put(index, image)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.decoded(index)
        if self.augment is not None and self.augment.time_shift:
            # Rolled while still bytes (a cached image is never changed): a third of the floats'
            # memory, and no small torch operations, which are slow when cores are shared.
            image = np.roll(image, int(self.rng.integers(0, image.shape[1])), axis=1)
        x = image_to_tensor(image)  # a fresh tensor, masked in place
        if self.augment is not None:
            x = spec_augment(
                x,
                self.augment.freq_masks,
                self.augment.time_masks,
                self.augment.mask_fraction,
                self.rng,
            )
        return x, self.labels[index]


class WaveformItems(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Raw 16 kHz waveforms (with the item's noise level) as ``((clip_samples,) float32, class)``.

    Training takes a random crop of ``clip_samples`` (tiling shorter clips), evaluation the first
    ``clip_samples``, as AASIST does; the crop then loses its mean (its DC offset), as each window
    does at verdict time (:func:`~fakevoice.features.remove_dc`). Each item's waveform with its
    noise is kept in memory, up to ``cache_bytes`` (float32, 256 kB per 4 s) shared by the
    loader's workers, so later epochs neither decode the clip nor make its noise again (most of
    an item's time); crops and augmentations run on every access.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        dataset_dir: Path,
        labels: list[int],
        clip_samples: int,
        augment: AugmentSpec | None = None,
        seed: int = 0,
        cache_bytes: int = WAVEFORM_CACHE_BYTES,
    ) -> None:
        self.rows: list[dict[str, Any]] = [
            {str(k): v for k, v in row.items()} for row in frame.to_dict("records")
        ]
        self.labels = list(labels)
        self.dataset_dir = dataset_dir
        self.clip_samples = clip_samples
        self.augment = augment
        self.seed = seed
        self.rng = worker_rng(seed, None)
        self.cache = SharedItemCache(len(self.rows), cache_bytes, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def seed_worker(self, worker_seed: int) -> None:
        """Give this copy (in a data-loader worker) its own augmentation stream."""
        self.rng = worker_rng(self.seed, worker_seed)

    def new_empty(self) -> WaveformItems:
        """An empty copy (fastai's export keeps the data pipeline, not the data)."""
        return WaveformItems(
            pd.DataFrame(), self.dataset_dir, [], self.clip_samples, None, self.seed
        )

    def waveform(self, index: int) -> np.ndarray:
        """Item ``index`` with its noise, ``(n,)`` float32, made once while the cache has room
        (never to be changed: it may be the cache's own memory)."""
        cached = self.cache.get(index)
        if cached is not None:
            return cached
        y = load_item_waveform(self.dataset_dir, self.rows[index]).astype(np.float32)
        return self.cache.put(index, y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        y = self.waveform(index)
        n = self.clip_samples
        if self.augment is not None and self.augment.time_shift and y.size > n:
            start = int(self.rng.integers(0, y.size - n + 1))
            y = y[start : start + n]
        else:
            y = fit_length(y, n)
        y = remove_dc(y)  # as the detector's windows; before the noise mix, set by its power
        if self.augment is not None and self.rng.random() < self.augment.noise_mix:
            snr_db = float(self.rng.uniform(5.0, 30.0))
            power = float(np.mean(y**2)) + 1e-12
            noise = self.rng.standard_normal(y.size).astype(np.float32)
            y = y + noise * np.sqrt(power / 10 ** (snr_db / 10))
        # Never the cache's memory: remove_dc made a new array.
        return torch.from_numpy(np.asarray(y, dtype=np.float32)), self.labels[index]
