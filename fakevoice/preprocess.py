"""The one preprocessing path from audio to model input, shared by training, pages, API and CLI.

Every stretch of audio a model sees, a window of a clip or a dataset's item, first loses its own
mean (its DC offset, :func:`~fakevoice.features.remove_dc`): per window, so a window's input never
depends on the rest of the clip or on how the clip is batched. Image models then see an RGB
spectrogram image normalised with ImageNet statistics (the same whether or not ImageNet weights
were used, so a model's input never depends on how it was initialised). Waveform models see the
16 kHz samples, no other normalisation (as the official AASIST).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from fakevoice.features import FeatureSpec, remove_dc, render_image

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Each channel's 256 byte values, normalised as ``(v / 255 - mean) / std`` in float32: looking
# them up gives the same floats as computing them pixel by pixel, five times faster.
_NORMALISED = (np.arange(256, dtype=np.float32)[None, :] / 255.0 - IMAGENET_MEAN[:, None]) / (
    IMAGENET_STD[:, None]
)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Turn an RGB image into a normalised model input.

    Args:
        image: ``(H, W, 3)`` uint8.

    Returns:
        ``(3, H, W)`` float32 tensor, ImageNet-normalised.
    """
    out = np.empty((3, *image.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(_NORMALISED[channel], image[..., channel], out=out[channel])
    return torch.from_numpy(out)


def waveform_to_image_tensor(samples: np.ndarray, spec: FeatureSpec) -> torch.Tensor:
    """Render a waveform (less its mean) as the model's spectrogram image and normalise it:
    ``(3, H, W)``."""
    return image_to_tensor(render_image(samples, spec))


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Tile a short clip (as AASIST's evaluation does) or take its first ``length`` samples."""
    if samples.size == 0:
        raise ValueError("cannot fit an empty waveform")
    if samples.size >= length:
        return samples[:length]
    repeats = int(np.ceil(length / samples.size))
    return np.tile(samples, repeats)[:length]


def window_starts(n_samples: int, window: int) -> list[int]:
    """Start indices of model-length windows every half window, the last aligned to the end.

    A clip no longer than one window gives a single window at 0 (it is tiled by :func:`windows`).
    """
    if n_samples <= window:
        return [0]
    hop = max(1, window // 2)
    starts = list(range(0, n_samples - window + 1, hop))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def windows(samples: np.ndarray, window: int) -> tuple[np.ndarray, list[int]]:
    """Cut a clip into model-length windows.

    Returns:
        ``(n_windows, window)`` float32 array and the window start indices (samples).
    """
    starts = window_starts(samples.size, window)
    if len(starts) == 1 and samples.size <= window:
        return fit_length(samples, window)[None, :].astype(np.float32), starts
    stacked = np.stack([samples[s : s + window] for s in starts])
    return stacked.astype(np.float32), starts


def model_windows(samples: np.ndarray, window: int, *, tiled: bool) -> tuple[np.ndarray, list[int]]:
    """The stretches of a clip a model sees: its :func:`windows` (a short clip tiled, for a
    waveform model), or, ``tiled`` false (an image model), a clip no longer than one window as
    it is, once: a dataset renders every item whole across the image's width, and a short clip
    tiled to the window had its time axis squeezed as no training image's was (a model's
    verdicts on its own validation clips moved by up to 0.14 in P(human))."""
    if not tiled and samples.size <= window:
        return samples.astype(np.float32)[None, :], window_starts(samples.size, window)
    return windows(samples, window)


def window_batches(
    samples: np.ndarray, window: int, spec: FeatureSpec | None, batch_size: int
) -> tuple[Iterator[torch.Tensor], list[int]]:
    """:func:`window_batch`'s batch, ``batch_size`` windows at a time: each is cut out (and
    rendered) only when its turn comes, so a long clip's windows, which overlap by half, are
    never all in memory at once.

    Returns:
        The batches, ``(at most batch_size, ...)`` each, and every window start (samples).
    """
    starts = window_starts(samples.size, window)

    def batches() -> Iterator[torch.Tensor]:
        if samples.size <= window:  # one window, tiled or whole
            yield _model_batch(model_windows(samples, window, tiled=spec is None)[0], spec)
            return
        for i in range(0, len(starts), batch_size):
            part = [samples[s : s + window] for s in starts[i : i + batch_size]]
            yield _model_batch(np.stack(part).astype(np.float32, copy=False), spec)

    return batches(), starts


def window_batch(
    samples: np.ndarray, window: int, spec: FeatureSpec | None
) -> tuple[torch.Tensor, list[int]]:
    """The batch a model sees for a clip: its :func:`model_windows`, as spectrogram images for
    an image model (``spec``) or as they are for a waveform model (``spec`` None):
    ``(n_windows, ...)`` and the window starts. The detector scores clips with it (through
    :func:`window_batches`); a run's familiarity reference is fitted on what it gives for the
    validation clips."""
    every = len(window_starts(samples.size, window))
    (batch,), starts = window_batches(samples, window, spec, every)
    return batch, starts


def _model_batch(stacked: np.ndarray, spec: FeatureSpec | None) -> torch.Tensor:
    """``(n, window)`` float32 windows as a model's input, each less its own mean: images for
    ``spec``, else the samples."""
    if spec is None:
        return torch.from_numpy(remove_dc(stacked))
    return torch.stack([waveform_to_image_tensor(w, spec) for w in stacked])
