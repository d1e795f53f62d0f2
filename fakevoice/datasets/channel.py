"""One channel for every clip, human or machine, so that a detector must learn the voice.

Real recordings and spoofs reach a dataset along different paths: the Asterisk prompts went through
G.722, TTS output never met a codec, vocoders leave exact digital zeros in pauses, and every source
has its own loudness and bandwidth. A classifier learns such differences far more easily than it
learns synthesis artefacts. :func:`equalise` therefore gives every clip the same treatment, in this
order:

1. band limit 80 Hz - 7 kHz: the band every source can fill, so bandwidth says nothing;
2. a G.722 round trip for all clips: the human sources already carry G.722, so the spoofs must too;
3. for a seeded share of clips (chosen by the clip's seed, never by its class), an extra Opus or MP3
   round trip, so codec artefacts are common to both classes instead of a label;
4. the band limit again: the codecs put quantisation noise back above 7 kHz;
5. one silence-trim rule (40 dB below the loudest frame, at most 0.1 s margin kept), so the length
   of the lead-in and tail of silence says nothing;
6. loudness normalisation to -26 dBFS RMS with a soft peak limiter, so level says nothing;
7. a -70 dBFS Gaussian noise floor, so no clip has exact digital zeros (vocoders and TTS leave them
   in pauses, real microphones never do).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import librosa
import numpy as np
from scipy import signal

from fakevoice.audio import AudioFormat, encode_audio, load_audio, resample
from fakevoice.datasets.noise import item_seed
from fakevoice.errors import InvalidSamplesError, SilentAudioError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HIGHPASS_HZ = 80.0
LOWPASS_HZ = 7000.0
EXTRA_CODEC_SHARE = 0.3
"""Share of clips (both classes alike) that get an extra Opus or MP3 round trip."""
EXTRA_CODECS: tuple[AudioFormat, ...] = ("opus", "mp3")
TRIM_TOP_DB = 40.0
TRIM_MARGIN_SECONDS = 0.1
TARGET_RMS_DBFS = -26.0
LIMITER_THRESHOLD = 0.9
"""Above this absolute value the limiter bends samples smoothly so that they stay below 1.0."""
NOISE_FLOOR_DBFS = -70.0


@lru_cache(maxsize=1)
def _band_filter() -> np.ndarray:
    """Second-order sections of the 80 Hz high-pass (order 4) and 7 kHz low-pass (order 8)."""
    high = signal.butter(4, HIGHPASS_HZ, btype="highpass", fs=SAMPLE_RATE, output="sos")
    low = signal.butter(8, LOWPASS_HZ, btype="lowpass", fs=SAMPLE_RATE, output="sos")
    return np.vstack([high, low])


def band_limit(samples: np.ndarray) -> np.ndarray:
    """Zero-phase band-pass 80 Hz - 7 kHz (about -32 dB at 7.2 kHz, -98 dB at 7.5 kHz).

    Args:
        samples: ``(n,)`` waveform at 16 kHz.

    Returns:
        ``(n,)`` float32 waveform; zero-phase so onsets are not smeared in time.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size <= 3 * 2 * _band_filter().shape[0]:
        # Too short for filtfilt's edge padding: a clip this short is filtered one way only.
        return signal.sosfilt(_band_filter(), x).astype(np.float32)
    return signal.sosfiltfilt(_band_filter(), x).astype(np.float32)


def codec_round_trip(samples: np.ndarray, fmt: AudioFormat) -> np.ndarray:
    """Encode with a codec and decode again at 16 kHz.

    Args:
        samples: ``(n,)`` float waveform at 16 kHz in [-1, 1].
        fmt: Container / codec, e.g. ``"g722"``, ``"opus"``, ``"mp3"``.

    Returns:
        ``(m,)`` float32 waveform at 16 kHz; ``m`` may differ slightly from ``n`` (codec delay).
    """
    data = encode_audio(np.clip(samples, -1.0, 1.0), SAMPLE_RATE, fmt)
    seconds = samples.size / SAMPLE_RATE
    decoded = load_audio(
        data,
        SAMPLE_RATE,
        max_seconds=seconds + 5.0,
        min_seconds=0.0,
        max_bytes=len(data) + 1,
        format_hint="g722" if fmt == "g722" else None,  # raw G.722 has no header to probe
    )
    return np.asarray(decoded.samples, dtype=np.float32)


def extra_codec(seed: int) -> AudioFormat | None:
    """The extra codec a clip gets (``None`` for most clips), chosen from the clip's seed only."""
    rng = np.random.default_rng(item_seed("channel-codec", seed))
    if rng.random() >= EXTRA_CODEC_SHARE:
        return None
    return EXTRA_CODECS[int(rng.integers(len(EXTRA_CODECS)))]


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """Cut leading and trailing silence, keeping at most 0.1 s of it on each side.

    Silence is anything 40 dB below the loudest 32 ms frame.

    Args:
        samples: ``(n,)`` waveform at 16 kHz.

    Returns:
        ``(m,)`` float32 waveform, ``m <= n``.
    """
    _, (start, end) = librosa.effects.trim(
        samples, top_db=TRIM_TOP_DB, frame_length=512, hop_length=128
    )
    margin = int(TRIM_MARGIN_SECONDS * SAMPLE_RATE)
    return np.asarray(
        samples[max(0, start - margin) : min(samples.size, end + margin)], dtype=np.float32
    )


def normalise_loudness(samples: np.ndarray) -> np.ndarray:
    """Scale to -26 dBFS RMS, then bend peaks above 0.9 smoothly so that none reach 1.0.

    Speech at -26 dBFS rarely peaks above -6 dBFS, so the limiter seldom acts and the RMS stays
    at the target.

    Args:
        samples: ``(n,)`` waveform, not silent.

    Returns:
        ``(n,)`` float32 waveform with ``|x| < 1``.
    """
    x = np.asarray(samples, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    x = x * (10.0 ** (TARGET_RMS_DBFS / 20.0) / rms)
    magnitude = np.abs(x)
    over = magnitude > LIMITER_THRESHOLD
    headroom = 1.0 - LIMITER_THRESHOLD
    magnitude[over] = LIMITER_THRESHOLD + headroom * np.tanh(
        (magnitude[over] - LIMITER_THRESHOLD) / headroom
    )
    return (np.sign(x) * magnitude).astype(np.float32)


def add_noise_floor(samples: np.ndarray, seed: int) -> np.ndarray:
    """Add Gaussian noise at -70 dBFS RMS, so that no sample is exactly zero.

    Args:
        samples: ``(n,)`` waveform.
        seed: Clip seed (the noise floor is deterministic).

    Returns:
        ``(n,)`` float32 waveform in [-1, 1] without exact zeros.
    """
    rng = np.random.default_rng(item_seed("channel-floor", seed))
    sigma = 10.0 ** (NOISE_FLOOR_DBFS / 20.0)
    y = np.clip(samples + sigma * rng.standard_normal(samples.size), -1.0, 1.0)
    # A Gaussian draw that cancels a sample exactly is all but impossible; make it impossible.
    y[y == 0.0] = sigma
    return y.astype(np.float32)


def equalise(samples: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """Put a clip through the channel every clip of a dataset shares (see the module docstring).

    Args:
        samples: ``(n,)`` float waveform in [-1, 1], normally already at 16 kHz (other rates are
            resampled first).
        sample_rate: Rate of ``samples`` in Hz.
        seed: The clip's seed (e.g. ``item_seed(dataset_seed, utterance, class)``); it chooses the
            extra codec and the noise floor, and nothing about the class does.

    Returns:
        ``(m,)`` float32 waveform at 16 kHz, ``m`` <= the input length plus codec delay.

    Raises:
        InvalidSamplesError: ``samples`` is not a finite 1-D array.
        SilentAudioError: the clip is silent.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise InvalidSamplesError(f"A clip must be mono (one dimension); got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise InvalidSamplesError("The clip contains NaN or infinite sample values.")
    if sample_rate != SAMPLE_RATE:
        x = resample(x, sample_rate, SAMPLE_RATE)
    if x.size == 0 or not np.any(x):
        raise SilentAudioError("The clip is silent, so it cannot be used.")
    x = band_limit(x)
    x = codec_round_trip(x, "g722")
    codec = extra_codec(seed)
    if codec is not None:
        x = codec_round_trip(x, codec)
    x = band_limit(x)
    x = trim_silence(x)
    if not np.any(x):
        raise SilentAudioError(
            "The clip is silent after the channel's codecs, so it cannot be used."
        )
    x = normalise_loudness(x)
    logger.debug("Equalised a clip: extra codec %s, %.2f s.", codec, x.size / SAMPLE_RATE)
    return add_noise_floor(x, seed)
