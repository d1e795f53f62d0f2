"""Tests for fakevoice.cautions: each reason to trust a verdict less, found in decoded files."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike
from scipy import signal

from fakevoice.audio import load_audio
from fakevoice.cautions import TestedEer, model_cautions, verdict_cautions

WINDOW = 16000  # a 1-second model window at 16 kHz


def wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def cautions_of(data: bytes, window: int = WINDOW) -> list[str]:
    return verdict_cautions(load_audio(data, 16000), 16000, window)


def wide_band(seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    """Speech-like harmonics with a breath of noise over the whole band, as a microphone gives."""
    rng = np.random.default_rng(1)
    noise = 0.02 * rng.standard_normal(int(seconds * sample_rate))
    return (speechlike(seconds, sample_rate) + noise).astype(np.float32)


def test_a_wide_band_clip_longer_than_the_window_has_none() -> None:
    assert cautions_of(wav(wide_band(), 16000)) == []
    assert cautions_of(wav(wide_band(2.0, 44100), 44100)) == []


def test_a_file_recorded_below_the_models_rate_is_named() -> None:
    (caution,) = cautions_of(wav(wide_band(2.0, 8000), 8000))
    assert caution.startswith("The file was recorded at 8 kHz, so it holds nothing above 4 kHz")
    assert "the model learned from 16 kHz audio" in caution


def test_telephone_audio_saved_at_16_khz_is_named() -> None:
    sos = signal.butter(10, 3400, btype="lowpass", fs=16000, output="sos")
    phone = signal.sosfiltfilt(sos, wide_band()).astype(np.float32)
    (caution,) = cautions_of(wav(phone, 16000))
    assert caution.startswith("The clip has almost nothing above 4 kHz, as a telephone recording")


def test_a_dc_offset_is_not_taken_for_a_missing_band() -> None:
    """An offset is power at 0 Hz, none of it sound: beside a quiet wide-band recording it made
    the band above 4 kHz look empty, as a telephone line's."""
    assert cautions_of(wav(0.5 + 0.05 * wide_band(), 16000)) == []
    sos = signal.butter(10, 3400, btype="lowpass", fs=16000, output="sos")
    phone = signal.sosfiltfilt(sos, wide_band()).astype(np.float32)
    (caution,) = cautions_of(wav(0.5 + 0.05 * phone, 16000))
    assert caution.startswith("The clip has almost nothing above 4 kHz, as a telephone recording")


def test_a_clip_shorter_than_the_window_is_named() -> None:
    (caution,) = cautions_of(wav(wide_band(1.5), 16000), window=64600)
    assert caution.startswith("The clip (1.5 s) is shorter than the model's window (4.04 s)")
    assert "repeated to fill it" in caution  # a waveform model's window
    audio = load_audio(wav(wide_band(1.5), 16000), 16000)
    (seen_once,) = verdict_cautions(audio, 16000, 64600, tiled=False)  # an image model's
    assert seen_once == (
        "The clip (1.5 s) is shorter than the model's window (4.04 s): the model saw it once, "
        "stretched across its image, so the verdict rests on little speech."
    )
    assert cautions_of(wav(wide_band(4.1), 16000), window=64600) == []


@pytest.mark.parametrize("gain", [4.0, 20.0])
def test_a_clipped_recording_is_named_with_its_share(gain: float) -> None:
    clipped = np.clip(wide_band() * gain, -1.0, 1.0)
    share = float(np.mean(np.abs(clipped) >= 0.999))
    audio = load_audio(wav(clipped, 16000), 16000)
    assert audio.info.clipped_fraction == pytest.approx(share, abs=1e-3)
    (caution,) = verdict_cautions(audio, 16000, WINDOW)
    assert caution.startswith(f"The recording is clipped ({share:.1%} of its samples")


def test_a_loud_clip_that_only_touches_full_scale_is_not_clipped() -> None:
    loud = wide_band() / np.max(np.abs(wide_band()))  # peaks at full scale once
    audio = load_audio(wav(loud, 16000), 16000)
    assert 0 < audio.info.clipped_fraction < 0.001
    assert verdict_cautions(audio, 16000, WINDOW) == []


def float_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_a_float_file_louder_than_full_scale_is_not_clipped() -> None:
    """A float file keeps samples beyond 1.0 whole: it is scaled down, never flattened, so only
    samples at its own peak count as full scale."""
    loud = wide_band() * (3.0 / np.max(np.abs(wide_band())))  # peaks at 3.0, a third beyond 1.0
    audio = load_audio(float_wav(loud, 16000), 16000)
    assert 0 < audio.info.clipped_fraction < 0.001
    assert verdict_cautions(audio, 16000, WINDOW) == []


def test_a_float_file_flattened_beyond_full_scale_is_clipped() -> None:
    flat = np.clip(wide_band() * 40.0, -2.0, 2.0)  # clipped, at 2.0 rather than 1.0
    share = float(np.mean(np.abs(flat) >= 2.0 * 0.999))
    audio = load_audio(float_wav(flat, 16000), 16000)
    assert audio.info.clipped_fraction == pytest.approx(share, abs=1e-3)
    (caution,) = verdict_cautions(audio, 16000, WINDOW)
    assert caution.startswith(f"The recording is clipped ({share:.1%} of its samples")


def test_a_long_clip_that_is_mostly_background_is_named() -> None:
    rng = np.random.default_rng(3)
    quiet = (0.0005 * rng.standard_normal(10 * 16000)).astype(np.float32)
    quiet[32000:40000] += wide_band(0.5)  # half a second of voice in ten seconds of hiss
    (caution,) = cautions_of(wav(quiet, 16000))
    assert caution.startswith("Only about 0.5 s of the 10.0 s clip is louder than its background")
    quiet[32000:80000] += wide_band(3.0)  # three seconds of voice: enough
    assert cautions_of(wav(quiet, 16000)) == []
    quiet[32000:80000] = 0.0005 * rng.standard_normal(48000)
    quiet[32000:40000] += wide_band(0.5)
    (on_offset,) = cautions_of(wav(0.5 + quiet, 16000))  # a DC offset is no sound either
    assert on_offset == caution


def test_a_short_clip_of_speech_with_pauses_is_not_called_background() -> None:
    # Syllables with quiet gaps: about 0.85 s of the 1.2 s is sound, most of the clip.
    assert cautions_of(wav(speechlike(1.2), 16000)) == []


# --- the model's own figures ---------------------------------------------------------------------


def test_a_model_near_chance_on_its_own_validation_data_is_named() -> None:
    assert model_cautions({}, measured_here=True) == []
    assert model_cautions({"eer": None}, measured_here=True) == []
    assert model_cautions({"eer": 0.12, "valid_items": 400}) == []
    (caution,) = model_cautions({"eer": 0.5, "valid_items": 18})
    assert caution.startswith("This model's own validation EER is 50.0% on 18 items")
    assert "Do not rely on its verdict" in caution
    # A model that is wrong one time in five or more is named too, in milder words.
    (erring,) = model_cautions({"eer": 0.396, "valid_items": 970})
    assert erring.startswith("This model's own validation EER is 39.6% on 970 items")
    assert "misjudges about 40% of clips" in erring and "Do not rely" not in erring
    assert model_cautions({"eer": 0.19, "valid_items": 970}) == []
    # The EER as the model's line above the verdict gives it, to a tenth of a point.
    (weak,) = model_cautions({"eer": 0.4583, "valid_items": 16})
    assert weak.startswith("This model's own validation EER is 45.8% on 16 items")


def test_a_model_nobody_measured_here_is_named() -> None:
    unknown = (
        "This model's error rate is unknown: it has no validation EER measured on this server, "
        "and you have not tested it on a dataset here. Weigh its verdict as an unmeasured hint; "
        "Test on a dataset (on the Evaluate page, or fakevoice evaluate --queue) measures it."
    )
    assert model_cautions({}) == [unknown]
    assert model_cautions({"eer": None, "source": "uploaded bundle (x.zip)"}) == [unknown]
    assert model_cautions({"dropped_validation": "the file is not JSON"}) == [unknown]
    # Figures another server's bundle reports are not this server's measure either.
    assert model_cautions({"reported_validation": {"eer": 0.0412, "key_id": "0" * 16}}) == [
        "This model's error rate was not measured on this server: the validation EER of 4.1% "
        "that its bundle reports was measured and signed by another server, and you have not "
        "tested it on a dataset here. Weigh its verdict as an unmeasured hint; Test on a dataset "
        "(on the Evaluate page, or fakevoice evaluate --queue) measures it."
    ]
    # Trained or tested here: measured, though no EER is kept with it.
    assert model_cautions({"reported_validation": {"eer": 0.04}}, measured_here=True) == []
    # A model with its own EER is judged by it, whoever measured it.
    assert model_cautions({"eer": 0.05}) == []
    assert model_cautions({"eer": 0.05}, measured_here=True) == []


def test_a_model_without_its_own_eer_is_judged_by_the_users_test_of_it() -> None:
    def test(eer: float | None, trained_on: int | None = 0) -> TestedEer:
        saved = datetime(2026, 12, 7, 21, 3, tzinfo=UTC)
        return TestedEer(12, "calls 2024", saved, eer, 1234, trained_on)

    assert model_cautions({}, tested=test(0.45)) == [
        "In your test on dataset 'calls 2024' (test #12, 2026-12-07) this model's EER was 45.0% "
        "on 1,234 items: on that audio it told human from machine speech little better than "
        "chance (50 %). Do not rely on its verdict."
    ]
    assert model_cautions({"reported_validation": {"eer": 0.04}}, tested=test(0.25)) == [
        "In your test on dataset 'calls 2024' (test #12, 2026-12-07) this model's EER was 25.0% "
        "on 1,234 items: on that audio it misjudged about 25% of clips at its equal-error point. "
        "Weigh its verdict as one hint among others, not as a finding."
    ]
    # The same bars as a validation EER: under one in five, no caution.
    assert model_cautions({}, tested=test(0.19)) == []
    (bar,) = model_cautions({}, tested=test(0.396))
    assert "39.6%" in bar and "misjudged about 40% of clips" in bar
    # The model's own validation EER, when it keeps one, is what counts.
    assert model_cautions({"eer": 0.05}, tested=test(0.45)) == []
    # A test on audio the model was trained on flatters it: it measures nothing.
    hint = (
        "Weigh its verdict as an unmeasured hint; Test on a dataset (on the Evaluate page, or "
        "fakevoice evaluate --queue) on recordings it was not trained on measures it."
    )
    assert model_cautions({}, tested=test(0.01, trained_on=30)) == [
        "This model's error rate is unknown: it has no validation EER measured on this server, "
        "and your test on dataset 'calls 2024' (test #12, 2026-12-07) held audio it was trained "
        f"on (30 of its 1,234 items), which flatters its EER there. {hint}"
    ]
    (changed,) = model_cautions({}, tested=test(0.01, trained_on=None))
    assert "was on the dataset it was trained on, changed since, so it may hold audio" in changed
    assert changed.endswith(hint)
    (one_sided,) = model_cautions({}, tested=test(None))
    assert "held only human or only machine items, so it measured no EER" in one_sided


def test_a_verdict_of_a_weak_model_carries_and_logs_the_caution(
    isolated_settings: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_uploads import make_user, register_run_model, trained_run_dir

    from fakevoice import services

    alice = make_user("alice")
    weak = register_run_model(
        alice, trained_run_dir(tmp_path_factory), "weak", metrics={"eer": 0.45, "valid_items": 30}
    )
    scored = services.score_clip(alice, weak, wav(wide_band(3.0), 16000), file_name="call.wav")
    assert scored.verdict.cautions == model_cautions(weak.metrics)
    assert scored.analysis.cautions == scored.verdict.cautions  # kept in the history too
