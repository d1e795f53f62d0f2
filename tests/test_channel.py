"""Tests for fakevoice.datasets.channel: the shared channel that hides codec, level and silence."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import speechlike, tone
from scipy import signal

from fakevoice.datasets.channel import (
    EXTRA_CODEC_SHARE,
    TARGET_RMS_DBFS,
    band_limit,
    codec_round_trip,
    equalise,
    extra_codec,
)
from fakevoice.errors import InvalidSamplesError, SilentAudioError

SAMPLE_RATE = 16000


def _band_power(samples: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def _padded_speech(pad_seconds: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like signal with broadband noise, between two stretches of digital silence."""
    rng = np.random.default_rng(seed)
    speech = speechlike(1.0, seed=seed) + 0.05 * rng.standard_normal(SAMPLE_RATE).astype(np.float32)
    pad = np.zeros(int(pad_seconds * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([pad, speech, pad]), speech


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equalised_clip_has_no_zeros_target_rms_and_trimmed_silence(seed: int) -> None:
    clip, speech = _padded_speech(seed=seed)
    out = equalise(clip, SAMPLE_RATE, seed=seed)

    assert out.dtype == np.float32 and out.ndim == 1
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1.0
    assert np.count_nonzero(out == 0.0) == 0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert rms_dbfs == pytest.approx(TARGET_RMS_DBFS, abs=0.5)
    # 0.5 s of silence on each side is cut to at most 0.1 s (plus a few ms of codec delay).
    assert speech.size * 0.9 < out.size < speech.size + 0.25 * SAMPLE_RATE


def test_no_long_runs_of_digital_silence_survive_pcm16() -> None:
    clip, _ = _padded_speech()
    pcm = np.round(equalise(clip, SAMPLE_RATE, seed=5) * 32767).astype(np.int16)
    zero = np.concatenate([[0], (pcm == 0).astype(np.int8), [0]])
    starts, ends = np.flatnonzero(np.diff(zero) == 1), np.flatnonzero(np.diff(zero) == -1)
    longest = int((ends - starts).max()) if starts.size else 0
    assert longest < 5


@pytest.mark.parametrize("seed", [0, 3])
def test_energy_above_7_2_khz_is_strongly_attenuated(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clip = (0.1 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)  # white: flat to 8 kHz
    out = equalise(clip, SAMPLE_RATE, seed=seed)
    before = _band_power(clip, 7200, 8000) / _band_power(clip, 1000, 6000)
    after = _band_power(out, 7200, 8000) / _band_power(out, 1000, 6000)
    assert 10 * np.log10(after / before) < -30.0


def test_band_limit_keeps_speech_band_and_removes_hum_and_top_octave() -> None:
    for frequency, kept in [(1000.0, True), (5000.0, True), (40.0, False), (7600.0, False)]:
        out = band_limit(tone(frequency))
        ratio = np.sqrt(np.mean(out[2000:-2000] ** 2)) / np.sqrt(np.mean(tone(frequency) ** 2))
        if kept:
            assert ratio == pytest.approx(1.0, abs=0.05), frequency
        else:
            assert ratio < 0.1, frequency


def test_equalise_is_deterministic_for_a_seed() -> None:
    clip, _ = _padded_speech(seed=1)
    np.testing.assert_array_equal(equalise(clip, SAMPLE_RATE, 42), equalise(clip, SAMPLE_RATE, 42))


def test_loud_and_quiet_copies_come_out_alike() -> None:
    clip, _ = _padded_speech(seed=2)
    loud = equalise(clip * 2.0, SAMPLE_RATE, seed=8)
    quiet = equalise(clip * 0.05, SAMPLE_RATE, seed=8)
    assert abs(loud.size - quiet.size) < 0.03 * SAMPLE_RATE
    freqs, psd_loud = signal.welch(loud, SAMPLE_RATE, nperseg=512)
    _, psd_quiet = signal.welch(quiet, SAMPLE_RATE, nperseg=512)
    band = (freqs > 200) & (freqs < 6000)
    difference_db = 10 * np.log10(psd_loud[band] / psd_quiet[band])
    assert np.max(np.abs(difference_db)) < 3.0


def test_extra_codec_is_chosen_for_about_a_third_of_seeds_and_uses_both_codecs() -> None:
    choices = [extra_codec(seed) for seed in range(2000)]
    share = sum(choice is not None for choice in choices) / len(choices)
    assert share == pytest.approx(EXTRA_CODEC_SHARE, abs=0.04)
    assert {"opus", "mp3"} == {choice for choice in choices if choice is not None}
    assert [extra_codec(seed) for seed in range(50)] == choices[:50]


@pytest.mark.parametrize("fmt", ["g722", "opus", "mp3"])
def test_codec_round_trip_changes_the_samples_but_not_the_content(fmt: str) -> None:
    clip = band_limit(speechlike(1.0))
    out = codec_round_trip(clip, fmt)  # type: ignore[arg-type]
    assert out.dtype == np.float32
    assert abs(out.size - clip.size) < 0.1 * SAMPLE_RATE
    assert not np.array_equal(out[: clip.size], clip[: out.size])
    rms_in, rms_out = np.sqrt(np.mean(clip**2)), np.sqrt(np.mean(out**2))
    assert rms_out == pytest.approx(rms_in, rel=0.3)


def test_other_sample_rates_are_resampled_to_16k() -> None:
    clip = speechlike(1.0, sample_rate=22050)
    out = equalise(clip, 22050, seed=0)
    assert SAMPLE_RATE * 0.8 < out.size < SAMPLE_RATE * 1.1


def test_silent_or_broken_clips_are_refused() -> None:
    with pytest.raises(SilentAudioError):
        equalise(np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, seed=0)
    broken = speechlike(0.5)
    broken[100] = np.nan
    with pytest.raises(InvalidSamplesError):
        equalise(broken, SAMPLE_RATE, seed=0)
    with pytest.raises(InvalidSamplesError):
        equalise(np.zeros((100, 2), dtype=np.float32), SAMPLE_RATE, seed=0)
