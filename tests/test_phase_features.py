"""The ``phase`` feature kind (fakevoice/phase_features.py): known answers for steady partials,
pulses, noise and a Griffin-Lim copy, and its place among the other kinds."""

from __future__ import annotations

from functools import partial

import conftest
import librosa
import numpy as np
import pytest
from scipy.signal import lfilter

from fakevoice.features import FeatureSpec, bin_axis, render_image, spectrogram_db
from fakevoice.phase_features import phase_maps

SR = 16000
SPEC = FeatureSpec(kind="phase")
tone = partial(conftest.tone, sample_rate=SR, amplitude=0.5)


def coherences(samples: np.ndarray) -> tuple[float, float]:
    """The mean green and blue of the loud cells, as shares of their level."""
    level, frequency, delay = phase_maps(samples.astype(np.float32), SPEC)
    loud = level > 0.5
    return (
        float(frequency[loud].mean() / level[loud].mean()),
        float(delay[loud].mean() / level[loud].mean()),
    )


def pulses(rate_hz: float = 100.0) -> np.ndarray:
    """A second of glottal-like pulses through one resonance: a crude vowel."""
    train = np.zeros(SR)
    train[:: int(SR / rate_hz)] = 1.0
    vowel = lfilter([1.0], [1.0, -1.3, 0.8], train)
    return (0.5 * vowel / np.abs(vowel).max()).astype(np.float32)


def test_steady_partials_and_pulses_are_coherent_and_noise_is_not() -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    tone_frequency, _ = coherences(tone(1003.0, seconds=1.0))  # between two bins
    pulse_frequency, pulse_delay = coherences(pulses())
    noise_frequency, noise_delay = coherences(noise)
    assert tone_frequency > 0.9 and pulse_frequency > 0.9  # a steady advance from frame to frame
    assert pulse_delay > 0.95  # every bin's phase lines up on the pulse
    assert noise_frequency < 0.5 and noise_delay < 0.75


def test_a_griffin_lim_copy_keeps_the_magnitude_and_scatters_the_phase() -> None:
    vowel = pulses()
    magnitude = np.abs(librosa.stft(vowel, n_fft=512, hop_length=128))
    copy = librosa.griffinlim(magnitude, n_iter=32, n_fft=512, hop_length=128, random_state=0)
    copy = copy[: vowel.size].astype(np.float32)
    mel = FeatureSpec(kind="mel")
    mel_change = np.abs(spectrogram_db(copy, mel) - spectrogram_db(vowel, mel))[:, 5:-5]
    assert np.median(mel_change) < 3.0  # the magnitude picture barely moves (dB)
    assert coherences(copy)[1] < coherences(vowel)[1] - 0.1  # the group delay does


def test_the_level_is_the_linear_kind_and_silence_stays_dark() -> None:
    voice = conftest.speechlike(1.5, SR)
    level, frequency, delay = phase_maps(voice, SPEC)
    linear = spectrogram_db(voice, FeatureSpec(kind="linear"))
    np.testing.assert_allclose(level, np.clip(linear / 80.0 + 1.0, 0.0, 1.0), atol=1e-5)
    assert level.shape == frequency.shape == delay.shape
    assert (frequency <= level + 1e-6).all() and (delay <= level + 1e-6).all()
    np.testing.assert_array_equal(spectrogram_db(voice, SPEC), linear)
    np.testing.assert_array_equal(bin_axis(SPEC)[0], bin_axis(FeatureSpec(kind="linear"))[0])
    assert (render_image(np.zeros(SR, dtype=np.float32), SPEC) == 0).all()


@pytest.mark.parametrize("size", [(224, 224), (100, 300)])
def test_the_image_has_level_and_two_phase_channels(size: tuple[int, int]) -> None:
    spec = FeatureSpec(kind="phase", image_height=size[0], image_width=size[1])
    image = render_image(pulses(), spec)
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    red, green, blue = (image[..., c].astype(float) for c in range(3))
    assert red.mean() > 20 and (green <= red + 2).all() and (blue <= red + 2).all()
    low = render_image(tone(200.0), spec)[..., 0].mean(axis=1)
    assert np.argmax(low) > size[0] * 0.75  # low frequencies at the bottom, as every kind
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
