"""The ``phase`` feature kind: what a magnitude spectrogram throws away, as an image.

Copy-synthesis spoofs (a vocoder re-synthesising a real recording) keep its magnitude spectrum
closely, which is why ``mel`` and ``linear`` images hardly tell them apart; what they change is
the phase. Griffin-Lim invents it by iteration, WORLD and LPC rebuild it from pulses and noise,
neural vocoders generate it. This kind keeps the phase, reduced to two maps that stay meaningful
when an image is resized (a raw phase, wrapped to (-pi, pi], does not):

- **red**: the power spectrogram in dB as the ``linear`` kind (bins in ``[fmin, fmax]``,
  ``[max - top_db, max]`` mapped to ``[0, 1]``);
- **green**: how steady the *instantaneous frequency* is around each bin: the change of the
  phase advance from one frame to the next (0 for a steady partial, whichever bin sees it), as a
  unit vector; its power-weighted mean over the 3 x 3 neighbourhood has length 1 where the
  partials hold steady and about 1/3 where the phase wanders (noise, scattered phase);
- **blue**: the same for the *group delay*: the phase step from one bin to the next, less the
  frame's power-weighted mean step (where in the frame the energy sits), whose coherence is high
  for pulse-like excitation (a glottal pulse) and low for phase a vocoder scattered.

Both phase maps are scaled by the red channel, so silence and noise below ``top_db`` stay dark
in every channel and the maps show the phase only where there is energy to carry it. The STFT is
the package's (periodic Hann, centred, zero padded): the image of a clip has the same frames and
bins as its ``linear`` image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.fft
from PIL import Image
from scipy.ndimage import uniform_filter

from fakevoice.spectral import hann_window, linear_bin_range, power_to_db

if TYPE_CHECKING:
    from fakevoice.features import FeatureSpec

NEIGHBOURHOOD = 3
"""Bins and frames (a square) over which the phase's coherence is measured."""


def complex_stft(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """The STFT of :func:`fakevoice.spectral.power_spectrogram`, complex:
    ``(n_fft // 2 + 1, 1 + n // hop_length)`` complex64."""
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    return np.ascontiguousarray(scipy.fft.rfft(frames * hann_window(n_fft), axis=-1).T)


def coherence(deviation: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The length of the ``weight``-weighted mean of ``exp(i * deviation)`` over each
    :data:`NEIGHBOURHOOD` square: 1 where the angles agree, near 0 where they scatter.

    Args:
        deviation: ``(bins, frames)`` angles, radians.
        weight: ``(bins, frames)`` non-negative weights (magnitudes).

    Returns:
        ``(bins, frames)`` float32 in ``[0, 1]`` (0 where the weights are all 0).
    """
    z = weight * np.exp(1j * deviation)
    real = uniform_filter(z.real, NEIGHBOURHOOD, mode="nearest")
    imag = uniform_filter(z.imag, NEIGHBOURHOOD, mode="nearest")
    total = uniform_filter(weight, NEIGHBOURHOOD, mode="nearest")
    length = np.hypot(real, imag) / np.maximum(total, 1e-12)
    return np.clip(length, 0.0, 1.0).astype(np.float32)


def phase_maps(y: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three channels of a ``phase`` image before resizing, low frequencies first.

    Args:
        y: ``(n,)`` checked float32 samples at ``spec.sample_rate``.
        spec: a ``phase`` spec.

    Returns:
        ``(level, frequency, delay)``: each ``(bins, frames)`` float32 in ``[0, 1]``; the bins
        are those of the ``linear`` kind.
    """
    stft = complex_stft(y, spec.n_fft, spec.hop_length)
    power = stft.real.astype(np.float64) ** 2 + stft.imag.astype(np.float64) ** 2
    phase = np.angle(stft).astype(np.float64)
    # How the phase's advance from frame to frame changes: 0 for a steady partial, whatever its
    # frequency and whichever bin sees it (the bin's own advance cancels).
    advance = np.diff(phase, axis=1, append=phase[:, -1:])
    step_in_time = np.diff(advance, axis=1, append=advance[:, -1:])
    step_in_frequency = np.diff(phase, axis=0, append=phase[-1:, :])
    # Where in the frame the energy sits turns every bin's phase by the same step: leave it out.
    mean_step = np.angle(np.sum(power * np.exp(1j * step_in_frequency), axis=0, keepdims=True))
    magnitude = np.sqrt(power)
    frequency = coherence(step_in_time, magnitude)
    delay = coherence(step_in_frequency - mean_step, magnitude)

    low, high = linear_bin_range(spec.sample_rate, spec.n_fft, spec.fmin, spec.resolved_fmax)
    db = power_to_db(power[low:high], None, spec.top_db)
    top = float(db.max())
    level = (
        np.clip((db - (top - spec.top_db)) / spec.top_db, 0.0, 1.0)
        if top > db.min()
        else (np.zeros_like(db))
    )
    level = level.astype(np.float32)
    return level, frequency[low:high] * level, delay[low:high] * level


def phase_image(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """A ``phase`` image: ``(image_height, image_width, 3)`` uint8, low frequencies at the bottom
    (red: level, green: instantaneous-frequency coherence, blue: group-delay coherence)."""
    channels = []
    for channel in phase_maps(y, spec):
        unit = np.ascontiguousarray(channel[::-1])
        if unit.shape != (spec.image_height, spec.image_width):
            resized = Image.fromarray(unit).resize(
                (spec.image_width, spec.image_height), Image.Resampling.BILINEAR
            )
            unit = np.asarray(resized)
        channels.append(np.minimum(unit * 256.0, 255.0).astype(np.uint8))
    return np.stack(channels, axis=-1)
