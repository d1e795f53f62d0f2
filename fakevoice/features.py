"""Spectrogram features and the images models see.

One :class:`FeatureSpec` says how a clip becomes a picture; :func:`spectrogram_db` turns samples
into a ``(bins, frames)`` matrix and :func:`db_to_image` turns that matrix into an ``(H, W, 3)``
uint8 image with low frequencies on the bottom row (as the original workbench's matplotlib
figures); :func:`render_image` does both, after :func:`remove_dc` has taken the samples' mean
(their DC offset) off, as it comes off every model input. Everything is numpy and scipy.fft; the
STFT, the dB step and the filterbanks (cached per parameter set) are :mod:`fakevoice.spectral`'s.

Conventions (chosen to match librosa 0.11 defaults, which the tests compare against):

- STFT: periodic Hann window of ``n_fft`` samples, ``center=True`` with zero padding
  (librosa's ``pad_mode="constant"``), so a clip of ``n`` samples gives ``1 + n // hop_length``
  frames (even ``n_fft``).
- ``mel``: power spectrogram (``power=2``) through a Slaney-style mel filterbank
  (``htk=False, norm="slaney"``), then ``power_to_db(ref=np.max, amin=1e-10, top_db)``: the loudest
  bin is 0 dB and nothing is below ``-top_db``.
- ``linear``: ``|STFT|^2`` in dB the same way, bins cropped to ``[fmin, fmax]``.
- ``mfcc``: ``librosa.feature.mfcc`` — mel power in dB with ``ref=1.0`` (so ``c0`` keeps the
  level), clipped at ``top_db`` below its maximum, DCT-II with orthonormal scaling, first
  ``n_coeffs`` rows.
- ``lfcc``: as the ASVspoof baselines: power spectrum through ``n_mels`` linearly spaced
  unit-height triangular filters between ``fmin`` and ``fmax``, log (in dB, ``ref=1.0``),
  DCT-II orthonormal, first ``n_coeffs`` rows.
- ``phase``: the ``linear`` level with two maps of the phase's local coherence (over time: the
  instantaneous frequency; over frequency: the group delay) as the image's green and blue
  channels (:mod:`fakevoice.phase_features`): copy-synthesis keeps the magnitude and changes the
  phase.
- ``cqt``: ``librosa.cqt`` (imported lazily; roughly 20x slower than the others and its first
  call in a process takes seconds), 24 bins per octave from ``fmin`` (C1 = 32.7 Hz when
  ``fmin`` is 0) up to ``fmax`` (or just under Nyquist), magnitude in dB like ``mel``.

Images: dB kinds map ``[max - top_db, max]`` to the colour map's ends. Cepstral kinds (``mfcc``,
``lfcc``) are standardised per coefficient over time first (cepstral mean and variance
normalisation) and map ``[-3, +3]`` standard deviations: ``c0`` spans hundreds of dB-units and
would otherwise leave every other row one flat colour. Colour maps are interpolated from 32
embedded anchors of matplotlib's tables (within 2 levels of 255 of matplotlib), so rendering never
imports matplotlib (:mod:`fakevoice.colormaps`). :mod:`fakevoice.png` writes the images.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np
import scipy.fft
from PIL import Image

from fakevoice.colormaps import COLORMAPS, colormap_lut
from fakevoice.errors import EmptyAudioError, InvalidSamplesError, InvalidSpecError
from fakevoice.spectral import (
    linear_bin_range,
    mel_edges,
    power_spectrogram,
    power_to_db,
    sparse_filterbank,
)

FeatureKind = Literal["mel", "linear", "mfcc", "lfcc", "cqt", "phase"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
FEATURE_KIND_HELP = (
    "mel: the ear's frequency scale (the default); linear: every STFT bin; mfcc / lfcc: "
    "cepstra of mel / linear bands (ASVspoof baselines use LFCC); cqt: constant-Q, finer at low "
    "frequencies (slow); phase: the linear level with how steady the phase is over time and "
    "frequency, which copy-synthesis changes while keeping the magnitude (slower to render)"
)
CEPSTRAL_KINDS = frozenset({"mfcc", "lfcc"})
LINEAR_KINDS = frozenset({"linear", "phase"})  # STFT bins in [fmin, fmax], one row each
FILTERBANK_KINDS = frozenset({"mel", "mfcc", "lfcc"})

CQT_BINS_PER_OCTAVE = 24
CQT_DEFAULT_FMIN = 32.703195662574764  # C1 in Hz, librosa's default CQT fmin
CQT_NYQUIST_MARGIN = 1.05  # the top CQT filter's band must stay below Nyquist
IMAGE_SIZE_RANGE = (16, 4096)
CEPSTRAL_SIGMAS = 3.0  # cepstral images span mean +- this many standard deviations


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """How a clip becomes a spectrogram and an image; validated once when built.

    Attributes:
        kind: ``mel``, ``linear``, ``mfcc``, ``lfcc``, ``cqt`` or ``phase``.
        sample_rate: rate of the samples given, Hz.
        n_fft: FFT and window length, samples.
        hop_length: frame step, samples (at most ``n_fft``).
        n_mels: filters of the mel (``mel``, ``mfcc``) or linear (``lfcc``) filterbank.
        n_coeffs: cepstral coefficients kept (``mfcc``, ``lfcc``); at most ``n_mels``.
        fmin: lowest frequency, Hz (``cqt``: 0 means C1, 32.7 Hz).
        fmax: highest frequency, Hz; ``None`` means ``sample_rate / 2``.
        top_db: dynamic range kept below the maximum, dB.
        image_height: image rows, pixels.
        image_width: image columns, pixels.
        colormap: ``magma``, ``viridis``, ``inferno`` or ``gray`` (``phase`` images use none).
    """

    kind: FeatureKind = "mel"
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 128
    n_coeffs: int = 40
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    image_height: int = 224
    image_width: int = 224
    colormap: str = "magma"

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, FEATURE_KINDS)
        _check_int("sample_rate", self.sample_rate, 1000, 384_000)
        _check_int("n_fft", self.n_fft, 16, 65_536)
        _check_int("hop_length", self.hop_length, 1, self.n_fft, "n_fft")
        n_bins = self.n_fft // 2 + 1
        if self.kind in FILTERBANK_KINDS:
            _check_int("n_mels", self.n_mels, 1, n_bins, "n_fft // 2 + 1")
        else:
            _check_int("n_mels", self.n_mels, 1, 65_536)
        if self.kind in CEPSTRAL_KINDS:
            _check_int("n_coeffs", self.n_coeffs, 1, self.n_mels, "n_mels")
        else:
            _check_int("n_coeffs", self.n_coeffs, 1, 65_536)
        nyquist = self.sample_rate / 2
        if not _is_real(self.fmin) or not 0 <= self.fmin < nyquist:
            raise InvalidSpecError(
                f"fmin must be a number in [0, sample_rate / 2) = [0, {nyquist:g}) Hz; "
                f"got {self.fmin!r}"
            )
        if self.fmax is not None and (
            not _is_real(self.fmax) or not self.fmin < self.fmax <= nyquist
        ):
            raise InvalidSpecError(
                f"fmax must be None or a number in (fmin, sample_rate / 2] = "
                f"({self.fmin:g}, {nyquist:g}] Hz; got {self.fmax!r}"
            )
        if not _is_real(self.top_db) or not 0 < self.top_db < math.inf:
            raise InvalidSpecError(f"top_db must be a positive number of dB; got {self.top_db!r}")
        if self.kind == "cqt" and _cqt_bins(self)[1] < 1:
            raise InvalidSpecError(
                f"the cqt kind needs at least a quarter tone between fmin and fmax (at most "
                f"sample_rate / 2 / {CQT_NYQUIST_MARGIN:g} for cqt); got fmin={self.fmin!r}, "
                f"fmax={self.fmax!r}"
            )
        _check_int("image_height", self.image_height, *IMAGE_SIZE_RANGE)
        _check_int("image_width", self.image_width, *IMAGE_SIZE_RANGE)
        _check_choice("colormap", self.colormap, COLORMAPS)

    @property
    def resolved_fmax(self) -> float:
        """``fmax``, or ``sample_rate / 2`` when unset, Hz."""
        return float(self.fmax) if self.fmax is not None else self.sample_rate / 2

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FeatureSpec:
        """Build a spec from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            InvalidSpecError: ``data`` is not a mapping, has unknown keys, or holds a bad value.
        """
        if not isinstance(data, dict):
            raise InvalidSpecError(
                f"a feature spec must be a mapping of field names to values; "
                f"got {type(data).__name__}"
            )
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(str(key) for key in data if key not in allowed)
        if unknown:
            raise InvalidSpecError(
                f"unknown feature spec keys: {', '.join(unknown)}; "
                f"allowed keys are {', '.join(allowed)}"
            )
        return cls(**data)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidSpecError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _check_int(name: str, value: object, low: int, high: int, high_name: str = "") -> None:
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not low <= int(value) <= high
    ):
        bound = f"{high_name} = {high}" if high_name else str(high)
        raise InvalidSpecError(f"{name} must be an integer in [{low}, {bound}]; got {value!r}")


# --- spectrograms --------------------------------------------------------------------------------


def spectrogram_db(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Compute the spectrogram (or cepstrogram) that ``spec`` names.

    Args:
        samples: ``(n,)`` mono waveform at ``spec.sample_rate`` (resample first), any float dtype.
        spec: the feature parameters.

    Returns:
        ``(bins, frames)`` float32 with ``frames = 1 + n // hop_length``. ``mel``, ``linear`` and
        ``cqt``: dB relative to the maximum, in ``[-top_db, 0]``; ``phase``: its level, as
        ``linear`` (its phase maps are in :func:`render_image`'s image only). ``mfcc``, ``lfcc``:
        ``(n_coeffs, frames)`` cepstral coefficients of the dB (``ref=1.0``) filterbank energies.

    Raises:
        EmptyAudioError: no samples.
        InvalidSamplesError: not one-dimensional, or NaN / infinite values.
    """
    y = _checked_samples(samples)
    if spec.kind == "cqt":
        return _cqt_db(y, spec)
    power = power_spectrogram(y, spec.n_fft, spec.hop_length)
    if spec.kind in LINEAR_KINDS:
        low, high = linear_bin_range(spec.sample_rate, spec.n_fft, spec.fmin, spec.resolved_fmax)
        return np.ascontiguousarray(power_to_db(power[low:high], None, spec.top_db))
    scale: Literal["mel", "linear"] = "linear" if spec.kind == "lfcc" else "mel"
    basis = sparse_filterbank(
        scale, spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.resolved_fmax
    )
    energies = basis @ power
    if spec.kind == "mel":
        return power_to_db(energies, None, spec.top_db)
    log_energies = power_to_db(energies, 1.0, spec.top_db)
    cepstrum = scipy.fft.dct(log_energies, type=2, norm="ortho", axis=0)[: spec.n_coeffs]
    return np.ascontiguousarray(cepstrum, dtype=np.float32)


def bin_axis(spec: FeatureSpec) -> tuple[np.ndarray, Literal["Hz", "coefficient"]]:
    """What each row of :func:`spectrogram_db`'s output stands for, lowest row first.

    Returns:
        ``(bins,)`` float64 and its unit: the centre frequency of each filter or bin in Hz
        (``mel``, ``linear``, ``cqt``), or the coefficient's index (``mfcc``, ``lfcc``).
    """
    if spec.kind in CEPSTRAL_KINDS:
        return np.arange(spec.n_coeffs, dtype=np.float64), "coefficient"
    if spec.kind == "cqt":
        fmin, n_bins = _cqt_bins(spec)
        return fmin * 2.0 ** (np.arange(n_bins) / CQT_BINS_PER_OCTAVE), "Hz"
    if spec.kind in LINEAR_KINDS:
        low, high = linear_bin_range(spec.sample_rate, spec.n_fft, spec.fmin, spec.resolved_fmax)
        return np.arange(low, high) * (spec.sample_rate / spec.n_fft), "Hz"
    return mel_edges(spec.fmin, spec.resolved_fmax, spec.n_mels + 1)[1:-1], "Hz"


def remove_dc(samples: np.ndarray) -> np.ndarray:
    """The samples less their mean (their DC offset): the first step of every model input.

    Args:
        samples: ``(n,)`` one stretch of audio, or ``(k, n)`` one stretch per row, any float
            dtype; left unchanged.

    Returns:
        float32 of the same shape, each row less its own mean (taken in float64).

    A constant offset (a cheap sound card, a phone recorder, an unsigned 8-bit WAV) says nothing
    of the voice, yet it reached the models: an offset of 0.3 moved an untrained specnet's
    P(human) on a clip from 0.68 to 0.74, and the official AASIST-L's log-odds of human on
    another from -24.3 to -16.7; where one class of a dataset has an offset and the other none,
    a model learns the offset. Only datasets built through the shared channel (demo sets, folder
    imports) lost it, at build time (its 80 Hz high-pass): not ASVspoof imports, which keep
    their own channel, nor any clip judged. So every stretch a model sees loses its own mean
    here: in :func:`render_image` (a dataset's item images, the detector's window images, the
    Evaluate page's view) and in a waveform model's windows (:mod:`fakevoice.preprocess` for
    verdicts, :class:`~fakevoice.datasets.loaders.WaveformItems` for training, after the crop).

    The mean of the stretch, not a DC-blocking high-pass, because:

    * a stretch's input depends on its own samples only. A filter's output in a window depends
      on the audio before it (a causal filter's state, a zero-phase filter's edges), so the same
      stretch would differ between a dataset item, a verdict window and a window of a clip
      batched or streamed otherwise; the mean does not care how a clip is cut.
    * it removes any constant offset exactly, that of a short clip tiled to a waveform model's
      window too (the tiled window loses its own mean), and leaves a mean-free stretch as it
      was, while a high-pass would bend every clip's lowest band. Models stored before see the
      inputs they were trained on, less each window's own small mean: in 1 s windows of the
      Asterisk prompts about 1e-4 of full scale, at most 1e-3, against speech at 0.15 RMS.
    * decoding stays bit-exact, and the stored clips, their fingerprints and the file checks
      (which measure the level about the mean already) are untouched.

    What it leaves: an offset that drifts within a stretch keeps its slow part (under a cycle or
    so per window), which lands in the lowest STFT bins. Images a dataset rendered before this
    step keep its clips' offsets (an ASVspoof import's; the channel cleared the others'): render
    it again to drop them (its ``dataset.json`` has no :data:`RENDER_VERSION` 2). A dataset whose
    classes differ in offset still says so in its shortcut audit (the ``dc_offset`` cue): a sign
    of different recording chains, whose other traces a model does hear.
    """
    y = np.asarray(samples, dtype=np.float32)
    if y.shape[-1] == 0:
        return y.copy()
    mean = y.mean(axis=-1, keepdims=True, dtype=np.float64)
    return y - mean.astype(np.float32)


def _checked_samples(samples: np.ndarray) -> np.ndarray:
    y = np.asarray(samples)
    if y.ndim != 1:
        raise InvalidSamplesError(f"expected mono samples of shape (n,); got shape {y.shape}")
    if y.size == 0:
        raise EmptyAudioError("the audio has no samples")
    y = y.astype(np.float32, copy=False)
    if not np.isfinite(y).all():
        raise InvalidSamplesError("the audio contains NaN or infinite sample values")
    return y


def _cqt_db(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    import librosa  # slow import; only the cqt kind needs it

    fmin, n_bins = _cqt_bins(spec)
    with warnings.catch_warnings():
        # Short clips: librosa warns for each octave whose filters outlast the clip.
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
        transform = librosa.cqt(
            y,
            sr=spec.sample_rate,
            hop_length=spec.hop_length,
            fmin=fmin,
            n_bins=n_bins,
            bins_per_octave=CQT_BINS_PER_OCTAVE,
        )
    magnitude = np.abs(transform)
    return power_to_db(magnitude**2, None, spec.top_db)


def _cqt_bins(spec: FeatureSpec) -> tuple[float, int]:
    """Lowest CQT frequency (Hz) and bin count: whole bins from there up to the usable top."""
    fmin = spec.fmin if spec.fmin > 0 else CQT_DEFAULT_FMIN
    fmax = min(spec.resolved_fmax, spec.sample_rate / 2 / CQT_NYQUIST_MARGIN)
    return fmin, int(CQT_BINS_PER_OCTAVE * math.log2(fmax / fmin)) if fmax > fmin else 0


# --- images --------------------------------------------------------------------------------------


def db_to_image(spec_db: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Colour a spectrogram as an image, low frequencies (or ``c0``) on the bottom row.

    Args:
        spec_db: ``(bins, frames)`` from :func:`spectrogram_db` with the same ``spec``.
        spec: gives ``kind``, ``top_db``, the image size and the colour map.

    Returns:
        ``(image_height, image_width, 3)`` uint8 RGB. dB kinds map ``[max - top_db, max]`` to the
        colour map's ends, and a constant input (silence) gives the first colour. Cepstral kinds
        standardise each coefficient over time and map ``[-3, +3]`` standard deviations (a
        constant coefficient gives the middle colour); their image ignores the level.

    Raises:
        InvalidSamplesError: ``spec_db`` is not a finite, non-empty 2-D array.
    """
    values = np.asarray(spec_db, dtype=np.float32)
    if values.ndim != 2 or values.size == 0 or not np.isfinite(values).all():
        raise InvalidSamplesError(
            f"expected a finite (bins, frames) spectrogram; got shape {values.shape}"
        )
    if spec.kind in CEPSTRAL_KINDS:
        deviation = np.maximum(values.std(axis=1, keepdims=True), 1e-6)
        scaled = (values - values.mean(axis=1, keepdims=True)) / (2 * CEPSTRAL_SIGMAS * deviation)
        unit = np.clip(scaled[::-1] + 0.5, 0.0, 1.0)
    else:
        high, lowest = float(values.max()), float(values.min())
        scale = 1.0 / spec.top_db if high > lowest else 0.0  # flat: first colour, as matplotlib
        unit = np.clip((values[::-1] - (high - spec.top_db)) * scale, 0.0, 1.0)
    size = (spec.image_width, spec.image_height)
    if unit.shape != (spec.image_height, spec.image_width):
        resized = Image.fromarray(np.ascontiguousarray(unit)).resize(
            size, Image.Resampling.BILINEAR
        )
        unit = np.asarray(resized)
    # matplotlib's rule for a 256-entry table: index = floor(x * 256), 1.0 -> 255.
    index = np.minimum(unit * 256.0, 255.0).astype(np.uint8)
    return np.take(colormap_lut(spec.colormap), index, axis=0)


# How render_image makes a dataset's images, as dataset.json records it (``render_version``; a
# dataset without one is 1): 1, from the samples as given; 2, from the samples less their mean
# (remove_dc). Raise it whenever the image of the same clip and spec changes, so that datasets
# rendered before say so and a resumed build renders its finished items again.
RENDER_VERSION = 2


def render_version_of(record: Mapping[str, Any]) -> int:
    """The ``render_version`` a dataset's ``dataset.json`` or a build's progress marker keeps; 1
    (the renderer before there was one) when it is missing or not a whole number."""
    value = record.get("render_version", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def render_image(samples: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Samples to model image: :func:`remove_dc`, :func:`spectrogram_db`, :func:`db_to_image`.

    Args:
        samples: ``(n,)`` mono waveform at ``spec.sample_rate``; its mean (DC offset) is
            removed first (:func:`remove_dc`), so an offset never reaches the image.
        spec: the feature parameters.

    Returns:
        ``(image_height, image_width, 3)`` uint8 RGB; for ``phase`` the level and two phase maps
        as its channels (:mod:`fakevoice.phase_features`), not a colour map.
    """
    y = remove_dc(_checked_samples(samples))
    if spec.kind == "phase":
        from fakevoice.phase_features import phase_image

        return phase_image(y, spec)
    return db_to_image(spectrogram_db(y, spec), spec)
