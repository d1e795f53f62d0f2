"""Tests for fakevoice.datasets.noise: SNR accuracy, determinism, names, seeds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import speechlike

from fakevoice.datasets.noise import (
    DEFAULT_NOISE_LEVELS,
    add_noise,
    item_seed,
    noise_name,
    parse_noise_levels,
    parse_noise_name,
)
from fakevoice.errors import InvalidSpecError

SAMPLE_RATE = 16000


def _sine(seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """SNR of a mixture against its clean signal, undoing any overall rescale of the mixture."""
    scale = float(noisy @ clean) / float(clean @ clean)
    noise = noisy / scale - clean
    return float(10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2)))


@pytest.mark.parametrize("snr", [30.0, 20.0, 10.0, 0.0, -10.0])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_measured_snr_matches_requested(snr: float, seed: int) -> None:
    clean = _sine()
    noisy = add_noise(clean, snr, seed)
    assert noisy.dtype == np.float32
    assert noisy.shape == clean.shape
    assert np.max(np.abs(noisy)) <= 1.0
    assert _snr_db(clean, noisy) == pytest.approx(snr, abs=0.5)


def test_snr_is_relative_to_active_speech_not_pauses() -> None:
    tone = _sine(1.0)
    with_pause = np.concatenate([tone, np.zeros(SAMPLE_RATE, dtype=np.float32)])
    noisy = add_noise(with_pause, 10.0, seed=5)
    noise = noisy - with_pause
    # Noise power is set by the tone's power, not by the average over tone and pause.
    measured = 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(10.0, abs=0.5)


def test_a_dc_offset_is_no_signal_power() -> None:
    """A recording with a constant offset gets the noise of the same recording without: the
    offset neither raises the noise (it is no sound) nor makes its pauses count as speech."""
    voice = np.concatenate([_sine(1.0), np.zeros(SAMPLE_RATE, dtype=np.float32)])
    for offset in (0.3, -0.2):
        shifted = add_noise(voice + np.float32(offset), 10.0, seed=5)
        np.testing.assert_allclose(shifted - offset, add_noise(voice, 10.0, seed=5), atol=1e-6)


def test_clean_level_returns_the_signal_unchanged() -> None:
    clean = speechlike(1.0)
    out = add_noise(clean, None, seed=3)
    np.testing.assert_array_equal(out, clean)
    assert out is not clean


def test_noise_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    clean = speechlike(1.0)
    a = add_noise(clean, 10.0, seed=11)
    b = add_noise(clean, 10.0, seed=11)
    c = add_noise(clean, 10.0, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_clipping_mixture_is_scaled_down_keeping_the_snr() -> None:
    loud = _sine(amplitude=0.95)
    noisy = add_noise(loud, -10.0, seed=2)
    assert np.max(np.abs(noisy)) <= 1.0
    assert _snr_db(loud, noisy) == pytest.approx(-10.0, abs=0.5)


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (None, "snr_inf"),
        (20.0, "snr_20db"),
        (-10.0, "snr_-10db"),
        (0.0, "snr_0db"),
        (2.5, "snr_2.5db"),
    ],
)
def test_noise_names_round_trip(level: float | None, name: str) -> None:
    assert noise_name(level) == name
    assert parse_noise_name(name) == level


def test_default_levels_have_distinct_names() -> None:
    names = [noise_name(level) for level in DEFAULT_NOISE_LEVELS]
    assert len(set(names)) == len(names)
    assert [parse_noise_name(n) for n in names] == list(DEFAULT_NOISE_LEVELS)


@pytest.mark.parametrize("bad", ["snr_20", "20db", "snr_xdb", "", "snr_inf_"])
def test_bad_noise_name_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidSpecError, match="noise level"):
        parse_noise_name(bad)


def test_parse_noise_levels_accepts_the_usual_spellings() -> None:
    assert parse_noise_levels("clean, 20,10db,snr_0db,-10") == [None, 20.0, 10.0, 0.0, -10.0]
    assert parse_noise_levels("inf,20,20") == [None, 20.0]


@pytest.mark.parametrize("bad", ["", " , ", "loud", "20,abc", "1e9", "nan"])
def test_parse_noise_levels_rejects_junk(bad: str) -> None:
    with pytest.raises(InvalidSpecError):
        parse_noise_levels(bad)


def test_item_seed_is_stable_across_processes_and_distinguishes_parts() -> None:
    here = item_seed(0, "utt_1__bonafide__snr_20db")
    code = (
        "from fakevoice.datasets.noise import item_seed;"
        "print(item_seed(0, 'utt_1__bonafide__snr_20db'))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert int(there) == here
    assert 0 <= here < 2**63
    assert item_seed(1) != item_seed("1")
    assert item_seed("a", "b") != item_seed("ab")
