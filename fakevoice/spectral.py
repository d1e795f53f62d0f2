"""The numpy building blocks under the feature kinds: STFT power, dB and filterbanks.

:func:`power_spectrogram` is the package's one STFT (periodic Hann window, ``center=True`` with
zero padding, as librosa's ``pad_mode="constant"``); :func:`power_to_db` is
``librosa.power_to_db``; the Slaney mel scale (:func:`mel_edges`) and the mel and linear
triangular filterbanks are built once per parameter set and cached read-only.
:mod:`fakevoice.features` puts them together into the feature kinds;
:mod:`fakevoice.phase_features`, :mod:`fakevoice.cautions` and :mod:`fakevoice.explain` use them
directly.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.fft
import scipy.sparse

logger = logging.getLogger(__name__)

AMIN = 1e-10  # power floor before the log, as librosa.power_to_db


# --- the STFT and dB ----------------------------------------------------------------------------


def power_spectrogram(y: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``|STFT|^2``: ``(n_fft // 2 + 1, 1 + n // hop_length)`` float32, centred, zero padded."""
    padded = np.pad(y, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    # scipy's pocketfft keeps float32 and is several times faster than numpy.fft here.
    stft = scipy.fft.rfft(frames * hann_window(n_fft), axis=-1)
    power = stft.real**2 + stft.imag**2
    return np.ascontiguousarray(power.T)


def power_to_db(power: np.ndarray, ref: float | None, top_db: float) -> np.ndarray:
    """``librosa.power_to_db``; ``ref=None`` means relative to ``power.max()``."""
    ref_value = float(power.max()) if ref is None else ref
    db = 10.0 * np.log10(np.maximum(power, AMIN))
    db -= 10.0 * math.log10(max(ref_value, AMIN))
    np.maximum(db, db.max() - top_db, out=db)
    return db.astype(np.float32, copy=False)


# --- cached filterbanks --------------------------------------------------------------------------


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window ``(n_fft,)`` float32, as ``scipy.signal.get_window('hann')``."""
    n = np.arange(n_fft)
    return _frozen((0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa ``htk=False``)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    log_part = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log_part, hz / f_sp)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    log_part = min_log_hz * np.exp(logstep * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, log_part, mel * f_sp)


def mel_edges(fmin: float, fmax: float, n_bands: int) -> np.ndarray:
    """``n_bands + 1`` frequencies (Hz) from ``fmin`` to ``fmax``, equally spaced on the Slaney
    mel scale: the edges of ``n_bands`` bands that are equally wide to the ear."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_bands + 1))


def _triangles(edges_hz: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """Triangular filters with peak 1: ``(len(edges_hz) - 2, n_fft // 2 + 1)`` float64."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper))


@lru_cache(maxsize=16)
def _mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Slaney mel filterbank ``(n_mels, n_fft // 2 + 1)`` float32 (``librosa.filters.mel``)."""
    logger.debug("mel filterbank sr=%d n_fft=%d n_mels=%d", sample_rate, n_fft, n_mels)
    edges = mel_edges(fmin, fmax, n_mels + 1)
    weights = _triangles(edges, sample_rate, n_fft)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney area normalisation
    return _frozen(weights.astype(np.float32))


@lru_cache(maxsize=16)
def _linear_filterbank(
    sample_rate: int, n_fft: int, n_filters: int, fmin: float, fmax: float
) -> np.ndarray:
    """Linearly spaced unit-height triangles ``(n_filters, n_fft // 2 + 1)`` float32 (LFCC)."""
    edges = np.linspace(fmin, fmax, n_filters + 2)
    return _frozen(_triangles(edges, sample_rate, n_fft).astype(np.float32))


@lru_cache(maxsize=16)
def sparse_filterbank(
    scale: Literal["mel", "linear"],
    sample_rate: int,
    n_fft: int,
    n_filters: int,
    fmin: float,
    fmax: float,
) -> scipy.sparse.csr_array:
    """The filterbank as a sparse matrix: each bin feeds at most two filters, and a dense BLAS
    product of this size is slower, and oversubscribes cores when OpenBLAS spins up threads."""
    make = _mel_filterbank if scale == "mel" else _linear_filterbank
    return scipy.sparse.csr_array(make(sample_rate, n_fft, n_filters, fmin, fmax))


def linear_bin_range(sample_rate: int, n_fft: int, fmin: float, fmax: float) -> tuple[int, int]:
    """Row slice ``[low, high)`` of the STFT bins whose centre lies in ``[fmin, fmax]``."""
    bin_hz = sample_rate / n_fft
    low = math.ceil(fmin / bin_hz - 1e-9)
    high = math.floor(fmax / bin_hz + 1e-9) + 1
    return low, max(high, low + 1)
