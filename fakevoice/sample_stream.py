"""Changing the sample rate, of a whole array or of decoded audio as it arrives.

A decoder hands its samples to a :class:`SampleStream` a frame at a time. The stream resamples
them to the output rate and measures them at the file's own rate (length, invalid values, level,
clipping) as they go by, so decoding holds the output and a little more, never the file's samples
at its own rate: a ten-minute file at 384 kHz is 900 MB of float32 mono there, 38 MB at 16 kHz.
The stream's output is the same, sample for sample, as :func:`resample` of the whole recording.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

FULL_SCALE = 0.999
"""A sample this loud (of 1.0, or of a louder float file's peak) counts as clipped."""
BLOCK_SAMPLES = 1 << 16
"""Samples gathered from the decoder's small frames before they are measured and resampled."""
_QUALITY = "HQ"


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Change the sample rate with soxr (high quality).

    Args:
        samples: ``(n,)`` or ``(n, channels)`` audio.
        orig_sr: rate of ``samples``, Hz.
        target_sr: wanted rate, Hz.

    Returns:
        float32 array of the same layout, about ``n * target_sr / orig_sr`` samples long.
    """
    x = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr or x.shape[0] == 0:
        return x.copy()
    return np.asarray(soxr.resample(x, orig_sr, target_sr, quality=_QUALITY), dtype=np.float32)


@dataclass(frozen=True)
class SampleSummary:
    """The mono samples at the file's own rate, measured as they went by."""

    n_samples: int
    n_invalid: int
    """Samples that are NaN or infinite."""
    mean: float
    minimum: float
    maximum: float
    clipped_fraction: float
    """Share of the samples at full scale, ``|x| >= 0.999`` (of the peak instead of 1.0 when
    the peak is above 1.0: a float file louder than full scale is scaled down, not flattened)."""
    channel_peak: float = 0.0
    """The loudest sample of any one channel before the downmix, about that channel's mean in
    each decoded block (0 for a mono file): sound the mono samples lost when channels cancel."""


class SampleStream:
    """Mono samples in a chunk at a time at ``sample_rate``; float32 at ``target_rate`` out.

    Args:
        sample_rate: rate of the samples put in, Hz.
        target_rate: rate of the samples :meth:`finish` returns, Hz.
    """

    def __init__(self, sample_rate: int, target_rate: int) -> None:
        self._resampler = (
            None
            if sample_rate == target_rate
            else soxr.ResampleStream(sample_rate, target_rate, 1, dtype="float32", quality=_QUALITY)
        )
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._output: list[np.ndarray] = []
        self.n_samples = 0
        """Samples put in so far."""
        self._n_invalid = 0
        self._total = 0.0
        self._minimum = np.inf
        self._maximum = -np.inf
        self._peak = 0.0
        self._channel_peak = 0.0
        # Magnitudes at or above the clipping threshold and how often each came, with the
        # threshold as it stands: it rises with the peak, so the set only shrinks to those at the
        # final one. Float32 holds about 17,000 values within 0.1 % of any peak, so it stays small.
        self._loud_values = np.empty(0, np.float32)
        self._loud_counts = np.empty(0, np.int64)

    def add(self, samples: np.ndarray, channel_peak: float = 0.0) -> None:
        """Take the next ``(n,)`` float32 mono samples (kept until measured: not to be reused),
        and the peak of their loudest channel before the downmix (0 for mono)."""
        self._channel_peak = max(self._channel_peak, channel_peak)
        self._pending.append(samples)
        self._n_pending += samples.size
        self.n_samples += samples.size
        if self._n_pending >= BLOCK_SAMPLES:
            self._take_pending(last=False)

    def finish(self) -> tuple[np.ndarray, SampleSummary]:
        """The ``(m,)`` float32 samples at ``target_rate`` and the summary of all put in."""
        self._take_pending(last=True)
        samples = np.concatenate(self._output) if self._output else np.empty(0, np.float32)
        self._output = []
        n = self.n_samples
        summary = SampleSummary(
            n_samples=n,
            n_invalid=self._n_invalid,
            mean=self._total / n if n else 0.0,
            minimum=float(self._minimum) if n else 0.0,
            maximum=float(self._maximum) if n else 0.0,
            clipped_fraction=int(self._loud_counts.sum()) / n if n else 0.0,
            channel_peak=self._channel_peak,
        )
        return samples, summary

    def _take_pending(self, last: bool) -> None:
        if len(self._pending) == 1:
            block = np.asarray(self._pending[0], dtype=np.float32)
        elif self._pending:
            block = np.concatenate(self._pending, dtype=np.float32)
        else:
            block = np.empty(0, np.float32)
        self._pending, self._n_pending = [], 0
        if block.size:
            self._measure(block)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block, last=last)
        if block.size:
            self._output.append(block)

    def _measure(self, block: np.ndarray) -> None:
        self._n_invalid += block.size - int(np.count_nonzero(np.isfinite(block)))
        self._total += float(block.sum(dtype=np.float64))
        self._minimum = min(self._minimum, float(block.min()))
        self._maximum = max(self._maximum, float(block.max()))
        magnitude = np.abs(block)
        self._peak = max(self._peak, float(magnitude.max()))
        threshold = FULL_SCALE * max(self._peak, 1.0)
        loud = magnitude[magnitude >= threshold]
        if loud.size == 0 and self._loud_values.size == 0:
            return
        kept = self._loud_values >= threshold
        values, inverse = np.unique(
            np.concatenate([self._loud_values[kept], loud]), return_inverse=True
        )
        counts = np.concatenate([self._loud_counts[kept], np.ones(loud.size, np.int64)])
        self._loud_values = values
        self._loud_counts = np.bincount(inverse, weights=counts, minlength=values.size).astype(
            np.int64
        )
