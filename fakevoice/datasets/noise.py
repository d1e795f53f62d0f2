"""Additive noise at a chosen signal-to-noise ratio, and the names of noise levels.

A noise level is an SNR in dB, or ``None`` for the clean clip. Datasets name their folders after it
(``snr_inf``, ``snr_20db``, ``snr_-10db``). Noise is generated from a seed, so the image of an item
and the waveform a raw-waveform model reads for the same item carry exactly the same noise.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re

import numpy as np

from fakevoice.errors import InvalidSpecError

logger = logging.getLogger(__name__)

NoiseLevel = float | None
"""SNR in dB; ``None`` means clean (no noise added)."""

DEFAULT_NOISE_LEVELS: tuple[NoiseLevel, ...] = (None, 20.0, 10.0, 0.0, -10.0)

MIN_SNR_DB = -30.0
MAX_SNR_DB = 100.0

_CLEAN_WORDS = frozenset({"clean", "inf", "none", "snr_inf"})
_NAME_PATTERN = re.compile(r"^snr_(-?\d+(?:\.\d+)?)db$")
_NUMBER_PATTERN = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:db)?$")

# Frames for the active-power estimate: 20 ms at 16 kHz; frames more than 40 dB below the loudest
# one count as pauses, so an utterance with long pauses is not treated as a quiet one.
_FRAME = 320
_ACTIVE_FLOOR_DB = 40.0


def _check_level(level: float) -> float:
    if not math.isfinite(level) or not MIN_SNR_DB <= level <= MAX_SNR_DB:
        raise InvalidSpecError(
            f"A noise level must be an SNR between {MIN_SNR_DB:g} and {MAX_SNR_DB:g} dB, "
            f"or 'clean'; got {level!r}."
        )
    return float(level) + 0.0  # + 0.0 turns -0.0 into 0.0, so its name is 'snr_0db'


def noise_name(level: NoiseLevel) -> str:
    """The folder name of a noise level.

    Args:
        level: SNR in dB, or ``None`` for clean.

    Returns:
        ``"snr_inf"`` for clean, otherwise ``"snr_<snr>db"`` (``20.0 -> "snr_20db"``,
        ``-10 -> "snr_-10db"``, ``2.5 -> "snr_2.5db"``).
    """
    if level is None:
        return "snr_inf"
    return f"snr_{_check_level(level):g}db"


def parse_noise_name(name: str) -> NoiseLevel:
    """Inverse of :func:`noise_name`.

    Raises:
        InvalidSpecError: ``name`` is not a noise-level name.
    """
    if name == "snr_inf":
        return None
    match = _NAME_PATTERN.match(name)
    if match is None:
        raise InvalidSpecError(
            f"'{name}' is not a noise level name; expected 'snr_inf' or e.g. 'snr_20db'."
        )
    return _check_level(float(match.group(1)))


def parse_noise_levels(text: str) -> list[NoiseLevel]:
    """Parse a comma-separated list of noise levels, e.g. ``"clean,20,10,0,-10"``.

    Each entry is ``clean`` (also ``inf``, ``none``, ``snr_inf``), a number of dB (``20``,
    ``20db``) or a folder name (``snr_20db``). Repeated levels are kept once, in order.

    Raises:
        InvalidSpecError: an entry is not a level, or the list is empty.
    """
    levels: list[NoiseLevel] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        level: NoiseLevel
        if entry in _CLEAN_WORDS:
            level = None
        elif entry.startswith("snr_"):
            level = parse_noise_name(entry)
        else:
            match = _NUMBER_PATTERN.match(entry)
            if match is None:
                raise InvalidSpecError(
                    f"'{raw.strip()}' is not a noise level; use 'clean' or an SNR in dB such as "
                    "'20' or '-10'."
                )
            level = _check_level(float(match.group(1)))
        if level not in levels:
            levels.append(level)
    if not levels:
        raise InvalidSpecError("No noise levels given; use e.g. 'clean,20,10,0,-10'.")
    return levels


def active_power(samples: np.ndarray) -> float:
    """Mean power of the active (non-pause) part of a signal.

    Args:
        samples: ``(n,)`` waveform.

    Returns:
        Mean square over the 20 ms frames within 40 dB of the loudest frame (0.0 for silence).
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return 0.0
    n_frames = max(1, x.size // _FRAME)
    frames = np.array_split(x, n_frames)
    powers = np.array([np.mean(f * f) for f in frames])
    loudest = float(powers.max())
    if loudest <= 0.0:
        return 0.0
    active = powers >= loudest * 10.0 ** (-_ACTIVE_FLOOR_DB / 10.0)
    return float(powers[active].mean())


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum (``-3 dB``/octave), unit-free, ``(n,)``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise: np.ndarray = np.fft.irfft(spectrum / np.sqrt(freqs), n=n)
    return noise


def add_noise(samples: np.ndarray, snr_db: NoiseLevel, seed: int) -> np.ndarray:
    """Add Gaussian noise at an exact SNR relative to the signal's active power.

    The noise is white or pink (chosen by the seed) and scaled so that active signal power over
    noise power equals ``snr_db``. The signal's power is measured about its mean: a DC offset is
    no sound (models never see it, :func:`~fakevoice.features.remove_dc`), and counted as power it
    buried a recording with an offset in more noise than its level named, and counted its pauses
    as speech. If the mixture would clip, the whole mixture is scaled down, which keeps the SNR.

    Args:
        samples: ``(n,)`` float waveform in [-1, 1].
        snr_db: SNR in dB, or ``None`` for clean (a float32 copy is returned unchanged).
        seed: Noise seed; the same seed gives the same noise (see :func:`item_seed`).

    Returns:
        ``(n,)`` float32 waveform in [-1, 1].
    """
    x = np.asarray(samples, dtype=np.float32)
    if snr_db is None:
        return x.copy()
    snr_db = _check_level(snr_db)
    signal_power = active_power(x - x.mean(dtype=np.float64))
    if signal_power <= 0.0 or x.size < 2:
        logger.debug("Signal is silent: no noise level can be relative to it; left unchanged.")
        return x.copy()
    rng = np.random.default_rng(seed)
    noise = _pink(x.size, rng) if rng.random() < 0.5 else rng.standard_normal(x.size)
    noise -= noise.mean()
    noise *= math.sqrt(signal_power / 10.0 ** (snr_db / 10.0) / float(np.mean(noise * noise)))
    mixture = x.astype(np.float64) + noise
    peak = float(np.max(np.abs(mixture)))
    if peak > 1.0:
        mixture /= peak
    return mixture.astype(np.float32)


def item_seed(*parts: str | int) -> int:
    """A seed from some identifiers, the same in every process (unlike ``hash()``).

    Args:
        *parts: Strings and integers, e.g. ``item_seed(dataset_seed, item_id)``; ``1`` and ``"1"``
            give different seeds.

    Returns:
        A non-negative integer below ``2**63``.
    """
    key = "\x1f".join(repr(part) for part in parts).encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def noise_sort_key(noise: str) -> tuple[int, float, str]:
    """Order noise names clean first, then by falling SNR; unknown names last, alphabetically."""
    try:
        level = parse_noise_name(noise)
    except InvalidSpecError:
        return (2, 0.0, noise)
    if level is None:
        return (0, 0.0, noise)
    return (1, -float(level), noise)


def noise_label(noise: str) -> str:
    """A person's name for a noise level: ``"snr_inf"`` -> ``"clean"``, ``"snr_20db"`` -> ``"20 dB SNR"``.

    Unknown names are returned as they are.
    """
    try:
        level = parse_noise_name(noise)
    except InvalidSpecError:
        return noise
    return "clean" if level is None else f"{level:g} dB SNR"
