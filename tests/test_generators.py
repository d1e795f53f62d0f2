"""Tests for the spoof generators: registry, copy-synthesis vocoders and TTS voices.

Each generator that is available here must produce finite 16 kHz audio of a plausible length,
deterministically for a seed, and really re-synthesise (neither pass the input through nor lose it).
Generators that are not available are skipped with the reason the registry gives.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest
from conftest import speechlike

from fakevoice.datasets.generators import (
    DEFAULT_GENERATORS,
    TTS_SENTENCES,
    Generator,
    all_generators,
    available_generators,
    get_generator,
)
from fakevoice.errors import (
    GeneratorUnavailableError,
    InvalidSamplesError,
    InvalidSpecError,
    ServerConfigError,
)

SAMPLE_RATE = 16000
COPY_SYNTHESIS = ["world", "griffinlim", "mel_griffinlim", "lpc", "codec2", "hifigan"]
TTS = ["piper", "espeak"]
LANGUAGES = ["en", "es", "fr", "it", "ru", "cs", "nl"]


def _require(name: str) -> Generator:
    generator = get_generator(name)
    if not generator.available():
        reason = generator.unavailable_reason()
        assert reason, "an unavailable generator must say why"
        pytest.skip(f"{name} is unavailable here: {reason}")
    return generator


def _log_mel(samples: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=samples, sr=SAMPLE_RATE, n_fft=512, n_mels=40)
    return np.log(mel + 1e-6)


def test_registry_lists_every_generator_once_with_its_kind() -> None:
    names = [generator.name for generator in all_generators()]
    assert sorted(names) == sorted(COPY_SYNTHESIS + TTS)
    for generator in all_generators():
        assert get_generator(generator.name) is generator
        assert generator.description
        expected = "copy-synthesis" if generator.name in COPY_SYNTHESIS else "tts"
        assert generator.kind == expected
        assert (generator.languages is None) == (expected == "copy-synthesis")
    assert set(DEFAULT_GENERATORS) <= set(names)


def test_unknown_generator_lists_the_valid_names() -> None:
    with pytest.raises(InvalidSpecError, match="world.*espeak.*got 'vall-e'"):
        get_generator("vall-e")


def test_availability_is_consistent_with_the_reason() -> None:
    available = {generator.name for generator in available_generators()}
    for generator in all_generators():
        reason = generator.unavailable_reason()
        assert (reason is None) == (generator.name in available) == generator.available()
        if reason is not None:
            with pytest.raises(GeneratorUnavailableError, match=generator.name):
                generator.synthesize(speechlike(0.5), SAMPLE_RATE, "Hello.", "en", 0)


@pytest.mark.parametrize("name", COPY_SYNTHESIS)
def test_copy_synthesis_recreates_the_clip(name: str) -> None:
    generator = _require(name)
    clip = speechlike(1.0, seed=4)
    out = generator.synthesize(clip, SAMPLE_RATE, None, "en", seed=7)

    assert out.dtype == np.float32 and out.ndim == 1
    assert np.all(np.isfinite(out))
    assert abs(out.size - clip.size) <= 0.1 * clip.size
    assert 0.0 < np.max(np.abs(out)) <= 1.0
    np.testing.assert_array_equal(out, generator.synthesize(clip, SAMPLE_RATE, None, "en", 7))

    n = min(out.size, clip.size)
    waveform_similarity = float(
        out[:n] @ clip[:n] / (np.linalg.norm(out[:n]) * np.linalg.norm(clip[:n]))
    )
    assert waveform_similarity < 0.95, "the output is (nearly) the input: not a re-synthesis"
    spectral_similarity = np.corrcoef(_log_mel(out[:n]).ravel(), _log_mel(clip[:n]).ravel())[0, 1]
    assert spectral_similarity > 0.7, "the output lost the input's spectral content"


def test_copy_synthesis_resamples_other_rates_to_16k() -> None:
    generator = _require("lpc")
    clip = speechlike(1.0, sample_rate=22050)
    out = generator.synthesize(clip, 22050, None, "en", seed=0)
    assert out.size == pytest.approx(SAMPLE_RATE, abs=2)


def test_random_phase_vocoder_depends_on_the_seed() -> None:
    generator = _require("griffinlim")
    clip = speechlike(0.5)
    a = generator.synthesize(clip, SAMPLE_RATE, None, "en", seed=1)
    b = generator.synthesize(clip, SAMPLE_RATE, None, "en", seed=2)
    assert not np.allclose(a, b)


def test_copy_synthesis_needs_finite_samples() -> None:
    generator = _require("world")
    with pytest.raises(InvalidSpecError, match="mono samples"):
        generator.synthesize(None, SAMPLE_RATE, "Hello.", "en", 0)
    broken = speechlike(0.5)
    broken[10] = np.inf
    with pytest.raises(InvalidSamplesError):
        generator.synthesize(broken, SAMPLE_RATE, None, "en", 0)


def _check_speech(out: np.ndarray, text: str) -> None:
    assert out.dtype == np.float32 and out.ndim == 1
    assert np.all(np.isfinite(out))
    assert 0.0 < np.max(np.abs(out)) <= 1.0
    seconds = out.size / SAMPLE_RATE
    # Read speech runs at roughly 10-25 characters per second, plus a little leading/trailing pause.
    assert 0.02 * len(text) < seconds < 0.2 * len(text) + 1.0, f"{seconds:.2f} s for {text!r}"


def test_piper_speaks_english_deterministically() -> None:
    generator = _require("piper")
    text = TTS_SENTENCES["en"][1]
    out = generator.synthesize(None, SAMPLE_RATE, text, "en", seed=3)
    _check_speech(out, text)
    np.testing.assert_array_equal(out, generator.synthesize(None, SAMPLE_RATE, text, "en", 3))
    other = generator.synthesize(None, SAMPLE_RATE, text, "en", seed=4)
    assert other.size != out.size, "the seed should change the speaking rate"


def test_piper_is_loaded_on_the_cpu_even_where_onnxruntime_offers_cuda(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A GPU's rounding would build another dataset from the same seed."""
    _require("piper")
    import onnxruntime
    from piper import PiperVoice

    from fakevoice.datasets import tts

    asked: list[object] = []
    real_load = PiperVoice.load

    def load(*args: object, **kwargs: object) -> object:
        asked.append(kwargs.get("use_cuda"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tts, "_piper_cache", {})  # loaded again, as a new process would
    monkeypatch.setattr(PiperVoice, "load", staticmethod(load))
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert tts._piper_voice().session.get_providers() == ["CPUExecutionProvider"]
    assert asked == [False]


def test_piper_rejects_languages_it_does_not_speak() -> None:
    generator = _require("piper")
    with pytest.raises(InvalidSpecError, match="speaks en; got language 'fr'"):
        generator.synthesize(None, SAMPLE_RATE, TTS_SENTENCES["fr"][0], "fr", 0)


@pytest.mark.parametrize("language", LANGUAGES)
def test_espeak_speaks_each_language_deterministically(language: str) -> None:
    generator = _require("espeak")
    text = TTS_SENTENCES[language][2]
    out = generator.synthesize(None, SAMPLE_RATE, text, language, seed=5)
    _check_speech(out, text)
    # Another utterance in between must not change the result (no state carried over).
    generator.synthesize(None, SAMPLE_RATE, TTS_SENTENCES["en"][0], "en", seed=9)
    np.testing.assert_array_equal(out, generator.synthesize(None, SAMPLE_RATE, text, language, 5))


def test_espeak_seed_changes_the_voice() -> None:
    generator = _require("espeak")
    text = TTS_SENTENCES["en"][0]
    outs = {
        generator.synthesize(None, SAMPLE_RATE, text, "en", seed).tobytes() for seed in range(4)
    }
    assert len(outs) == 4


def test_tts_needs_text() -> None:
    generator = _require("espeak")
    with pytest.raises(InvalidSpecError, match="give it a sentence"):
        generator.synthesize(None, SAMPLE_RATE, "  ", "en", 0)


def test_tts_sentences_are_short_distinct_and_cover_the_languages() -> None:
    assert set(LANGUAGES) <= set(TTS_SENTENCES)
    espeak_languages = get_generator("espeak").languages or ()
    for language, sentences in TTS_SENTENCES.items():
        assert language in espeak_languages
        assert len(sentences) >= 15
        assert len(set(sentences)) == len(sentences)
        assert all(10 <= len(s) <= 100 and s == s.strip() for s in sentences)
    cyrillic = sum(1 for s in TTS_SENTENCES["ru"] for c in s if "\u0400" <= c <= "\u04ff")
    assert cyrillic > 200


def test_hifigan_runs_where_the_operator_says(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: object
) -> None:
    """FAKEVOICE_DEVICE decides where builds run HiFi-GAN, as it does for training: cpu keeps
    every build process off a GPU; cuda on a machine without one is refused, not ignored."""
    import torch

    from fakevoice.datasets.vocoders import hifigan_device
    from fakevoice.settings import get_settings

    monkeypatch.setenv("FAKEVOICE_DEVICE", "cpu")
    get_settings.cache_clear()
    assert hifigan_device().type == "cpu"
    monkeypatch.setenv("FAKEVOICE_DEVICE", "cuda")
    get_settings.cache_clear()
    if torch.cuda.is_available():
        assert hifigan_device().type == "cuda"
    else:
        with pytest.raises(ServerConfigError, match="FAKEVOICE_DEVICE is cuda"):
            hifigan_device()
