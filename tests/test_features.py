"""Tests for fakevoice.features: numbers against librosa, shapes, image orientation, the spec.

Tolerances: mel and linear dB may differ from librosa by at most 1e-3 of the dynamic range
(``top_db``; 0.08 dB at 80 dB) — float32 FFTs from different libraries differ by far less, a wrong
window, padding or filterbank by whole dB. MFCC: the same absolute bound on each coefficient (the
orthonormal DCT does not amplify errors beyond the dB vector's norm).
"""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError
from functools import partial
from pathlib import Path
from typing import Any

import conftest
import librosa
import numpy as np
import pytest
import scipy.fft
from conftest import speechlike

from fakevoice.colormaps import colormap_lut
from fakevoice.errors import EmptyAudioError, InvalidSamplesError, InvalidSpecError
from fakevoice.features import (
    FEATURE_KINDS,
    FeatureSpec,
    db_to_image,
    remove_dc,
    render_image,
    spectrogram_db,
)
from fakevoice.phase_features import phase_image

SR = 16000
HELLO_WORLD = next(
    iter(sorted(Path("/usr/share/asterisk/sounds").glob("en*/hello-world.g722"))),
    Path("/usr/share/asterisk/sounds/en/hello-world.g722"),
)

SPEC_VARIANTS: list[dict[str, Any]] = [
    {},
    {"n_fft": 1024, "hop_length": 256, "n_mels": 80, "fmin": 50.0, "fmax": 7600.0},
    {"n_fft": 400, "hop_length": 100, "n_mels": 64, "top_db": 60.0},
]


tone = partial(conftest.tone, sample_rate=SR, amplitude=0.5)


@pytest.fixture
def voice(rng: np.random.Generator) -> np.ndarray:
    """Speech-like signal plus a little white noise, 2 s."""
    return speechlike(2.0, SR) + (0.003 * rng.standard_normal(2 * SR)).astype(np.float32)


def librosa_mel_db(y: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=spec.sample_rate,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
        power=2.0,
        center=True,
        pad_mode="constant",
        htk=False,
        norm="slaney",
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=spec.top_db)


# --- numbers against librosa ---------------------------------------------------------------------


@pytest.mark.parametrize("params", SPEC_VARIANTS)
def test_mel_matches_librosa(voice: np.ndarray, params: dict[str, Any]) -> None:
    spec = FeatureSpec(kind="mel", **params)
    ours = spectrogram_db(voice, spec)
    reference = librosa_mel_db(voice, spec)
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape == (spec.n_mels, 1 + voice.size // spec.hop_length)
    assert np.abs(ours - reference).max() < 1e-3 * spec.top_db
    assert ours.max() == pytest.approx(0.0, abs=1e-4)
    assert ours.min() >= -spec.top_db - 1e-4


def test_mel_matches_librosa_on_real_speech() -> None:
    if not HELLO_WORLD.exists():
        pytest.skip("Debian package asterisk-core-sounds-en-g722 is not installed")
    import av

    with av.open(str(HELLO_WORLD), format="g722") as container:
        assert container.streams.audio[0].rate == SR
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    speech = (pcm / 32768.0).astype(np.float32)
    spec = FeatureSpec()
    assert np.abs(spectrogram_db(speech, spec) - librosa_mel_db(speech, spec)).max() < 0.08


@pytest.mark.parametrize("params", SPEC_VARIANTS)
def test_mfcc_matches_librosa(voice: np.ndarray, params: dict[str, Any]) -> None:
    spec = FeatureSpec(kind="mfcc", n_coeffs=30, **params)
    ours = spectrogram_db(voice, spec)
    mel = librosa.feature.melspectrogram(
        y=voice,
        sr=SR,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
        pad_mode="constant",
    )
    # librosa.feature.mfcc's own dB step is power_to_db(ref=1.0, top_db=80); pass top_db through.
    reference = librosa.feature.mfcc(
        S=librosa.power_to_db(mel, top_db=spec.top_db), n_mfcc=30, dct_type=2, norm="ortho"
    )
    assert ours.dtype == np.float32
    assert ours.shape == reference.shape == (30, 1 + voice.size // spec.hop_length)
    assert np.abs(ours - reference).max() < 1e-3 * spec.top_db


def test_mfcc_default_settings_match_librosa_mfcc_directly(voice: np.ndarray) -> None:
    spec = FeatureSpec(kind="mfcc")
    reference = librosa.feature.mfcc(
        y=voice, sr=SR, n_mfcc=40, n_fft=512, hop_length=160, n_mels=128
    )
    assert np.abs(spectrogram_db(voice, spec) - reference).max() < 0.08


def test_linear_matches_librosa_stft(voice: np.ndarray) -> None:
    spec = FeatureSpec(kind="linear")
    stft = librosa.stft(voice, n_fft=512, hop_length=160, center=True, pad_mode="constant")
    reference = librosa.power_to_db(np.abs(stft) ** 2, ref=np.max, top_db=80.0)
    ours = spectrogram_db(voice, spec)
    assert ours.shape == (257, 1 + voice.size // 160)
    assert np.abs(ours - reference).max() < 0.08


def test_linear_is_cropped_to_fmin_fmax(voice: np.ndarray) -> None:
    full = spectrogram_db(voice, FeatureSpec(kind="linear"))
    cropped = spectrogram_db(voice, FeatureSpec(kind="linear", fmin=1000.0, fmax=4000.0))
    # 31.25 Hz bins: 1000 Hz is bin 32, 4000 Hz bin 128, both kept.
    assert cropped.shape == (97, full.shape[1])
    assert np.isfinite(cropped).all()
    assert cropped.max() == pytest.approx(0.0, abs=1e-4)


# --- cepstral kinds and CQT ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected_filter"),
    [
        # 128 linear triangles over 0-8 kHz peak every 8000 / 129 Hz: 2 kHz sits on filter 31.
        ("lfcc", round(2000 * 129 / 8000) - 1),
        # Slaney mel: 2 kHz is 15 + 27 ln 2 / ln 6.4 = 25.05 mel of 45.2; filter ~70 of 128.
        ("mfcc", None),
    ],
)
def test_cepstra_invert_to_the_right_filter(kind: Any, expected_filter: int | None) -> None:
    spec = FeatureSpec(kind=kind, n_mels=128, n_coeffs=128)
    cepstrum = spectrogram_db(tone(2000.0), spec)
    assert cepstrum.shape == (128, 1 + SR // 160)
    assert np.isfinite(cepstrum).all()
    log_energies = scipy.fft.idct(cepstrum.astype(np.float64), type=2, norm="ortho", axis=0)
    peak = int(np.argmax(log_energies[:, 50]))
    if expected_filter is None:
        mel = librosa.feature.melspectrogram(
            y=tone(2000.0), sr=SR, n_fft=512, hop_length=160, n_mels=128, pad_mode="constant"
        )
        expected_filter = int(np.argmax(mel[:, 50]))
        assert 65 <= expected_filter <= 75
    assert abs(peak - expected_filter) <= 1


def test_lfcc_shape_and_values(voice: np.ndarray) -> None:
    spec = FeatureSpec(kind="lfcc", n_mels=60, n_coeffs=20, fmin=100.0, fmax=7000.0)
    lfcc = spectrogram_db(voice, spec)
    assert lfcc.dtype == np.float32
    assert lfcc.shape == (20, 1 + voice.size // 160)
    assert np.isfinite(lfcc).all()
    # c0 is the (scaled) mean log energy: louder audio raises it by the gain in dB * sqrt(n).
    louder = spectrogram_db(voice * 2.0, spec)
    gain_db = 20 * np.log10(2.0)
    np.testing.assert_allclose(louder[0] - lfcc[0], gain_db * np.sqrt(60), atol=0.05)
    np.testing.assert_allclose(louder[1:], lfcc[1:], atol=0.05)


def test_cqt_shape_range_and_pitch() -> None:
    spec = FeatureSpec(kind="cqt")
    cqt = spectrogram_db(tone(440.0), spec)
    # 24 bins per octave from C1 (32.7 Hz) to just under Nyquist.
    assert cqt.shape == (188, 1 + SR // 160)
    assert cqt.dtype == np.float32
    assert np.isfinite(cqt).all()
    assert cqt.max() == pytest.approx(0.0, abs=1e-4)
    assert cqt.min() >= -80.0 - 1e-4
    expected_bin = round(24 * np.log2(440.0 / 32.703195662574764))
    assert abs(int(np.argmax(cqt[:, 50])) - expected_bin) <= 1


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in FEATURE_KINDS if k != "cqt"])
def test_image_shape_and_dtype(voice: np.ndarray, kind: Any) -> None:
    spec = FeatureSpec(kind=kind, image_height=200, image_width=300)
    image = render_image(voice, spec)
    assert image.shape == (200, 300, 3)
    assert image.dtype == np.uint8
    assert image.std() > 5  # not a flat picture


@pytest.mark.parametrize("kind", ["mel", "linear", "cqt", "phase"])
def test_low_tone_lights_bottom_rows_high_tone_top_rows(kind: Any) -> None:
    spec = FeatureSpec(kind=kind, colormap="gray")
    low = render_image(tone(100.0), spec)[..., 0].astype(float).mean(axis=1)
    high = render_image(tone(7000.0), spec)[..., 0].astype(float).mean(axis=1)
    rows = spec.image_height
    assert np.argmax(low) > rows * 0.75
    assert np.argmax(high) < rows * 0.25
    assert low[-rows // 4 :].mean() > low[: rows // 4].mean()
    assert high[: rows // 4].mean() > high[-rows // 4 :].mean()


def test_db_to_image_maps_range_ends_to_colormap_ends() -> None:
    spec = FeatureSpec(image_height=16, image_width=20, top_db=60.0)
    ramp = np.linspace(-60.0, 0.0, 16, dtype=np.float32)[:, None].repeat(20, axis=1)
    ramp[0, :5] = -200.0  # below the floor: clipped to the first colour
    image = db_to_image(ramp, spec)
    lut = colormap_lut("magma")
    assert (image[-1] == lut[0]).all()  # lowest bin -> bottom row -> darkest
    assert (image[0] == lut[255]).all()  # highest bin -> top row -> brightest
    brightness = image.astype(int).sum(axis=(1, 2))
    assert (np.diff(brightness) <= 0).all()


@pytest.mark.parametrize("kind", ["mfcc", "lfcc"])
def test_cepstral_images_show_every_coefficient_and_ignore_level(
    voice: np.ndarray, kind: Any
) -> None:
    frames = 1 + voice.size // 160
    spec = FeatureSpec(kind=kind, colormap="gray", image_height=40, image_width=frames)
    image = render_image(voice, spec)[..., 0].astype(float)  # no resize: one row per coefficient
    assert (np.abs(image.mean(axis=1) - 127.5) < 20).all()  # each row centred on the middle
    assert (image.std(axis=1) > 20).all()  # and every coefficient's movement visible
    quieter = render_image(voice * 0.25, spec)[..., 0].astype(float)
    assert np.abs(quieter - image).max() <= 2  # level moves c0 only, which is standardised away


def test_constant_spectrogram_gives_first_colour() -> None:
    spec = FeatureSpec(colormap="viridis")
    image = render_image(np.zeros(SR, dtype=np.float32), spec)
    assert (image == colormap_lut("viridis")[0]).all()


def test_bad_spectrogram_for_image_is_rejected() -> None:
    with pytest.raises(InvalidSamplesError, match="finite"):
        db_to_image(np.full((4, 4), np.nan, dtype=np.float32), FeatureSpec())
    with pytest.raises(InvalidSamplesError, match="got shape"):
        db_to_image(np.zeros(10, dtype=np.float32), FeatureSpec())


# --- the DC offset -------------------------------------------------------------------------------


def test_remove_dc_takes_each_rows_own_mean_and_leaves_the_input_alone() -> None:
    rows = np.stack([np.full(100, 0.3), np.linspace(-1.0, 3.0, 100)]).astype(np.float32)
    original = rows.copy()
    got = remove_dc(rows)
    assert got.dtype == np.float32 and got.shape == (2, 100)
    np.testing.assert_allclose(got.mean(axis=1), 0.0, atol=1e-7)
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_allclose(got[1], np.linspace(-2.0, 2.0, 100), atol=1e-6)
    np.testing.assert_array_equal(rows, original)
    one = remove_dc(np.arange(4, dtype=np.float64))  # any float dtype in, float32 out
    assert one.dtype == np.float32 and one.tolist() == [-1.5, -0.5, 0.5, 1.5]
    assert remove_dc(np.zeros(0, dtype=np.float32)).shape == (0,)


@pytest.mark.parametrize("kind", [k for k in FEATURE_KINDS if k != "cqt"])
def test_a_dc_offset_never_reaches_the_image(voice: np.ndarray, kind: Any) -> None:
    """A cheap sound card's constant offset says nothing of the voice: the image of a clip with
    one is the image of the clip without (to a level of 255 where float32 rounding tips a
    pixel), whether the offset is up or down. Before, the offset's power at 0 Hz changed
    them: the ``linear`` image's loudest bin became the offset, darkening everything else."""
    spec = FeatureSpec(kind=kind, image_height=96, image_width=120, colormap="gray")
    clean = render_image(voice, spec).astype(int)
    for offset in (0.3, -0.2):
        shifted = render_image(voice + np.float32(offset), spec).astype(int)
        assert np.abs(shifted - clean).max() <= 1
        assert (shifted != clean).mean() < 0.01


@pytest.mark.parametrize("kind", [k for k in FEATURE_KINDS if k != "cqt"])
def test_a_clip_without_offset_gives_the_image_it_gave_before(voice: np.ndarray, kind: Any) -> None:
    """Removing the mean changes nothing for a clip that has none: stored models see the images
    they were trained on (here against the renderer without the step)."""
    spec = FeatureSpec(kind=kind, image_height=96, image_width=120, colormap="gray")
    mean_free = (voice - voice.mean(dtype=np.float64)).astype(np.float32)
    before = (
        phase_image(mean_free, spec)
        if kind == "phase"
        else db_to_image(spectrogram_db(mean_free, spec), spec)
    )
    after = render_image(mean_free, spec)
    assert np.abs(after.astype(int) - before.astype(int)).max() <= 1
    assert (after != before).mean() < 0.01


# --- determinism and bad input -------------------------------------------------------------------


def test_rendering_is_deterministic_and_leaves_input_alone(voice: np.ndarray) -> None:
    spec = FeatureSpec()
    original = voice.copy()
    first = render_image(voice, spec)
    second = render_image(voice.copy(), spec)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(voice, original)
    from_float64 = spectrogram_db(voice.astype(np.float64), spec)
    np.testing.assert_array_equal(from_float64, spectrogram_db(voice, spec))


def test_bad_samples_are_rejected() -> None:
    spec = FeatureSpec()
    with pytest.raises(EmptyAudioError):
        spectrogram_db(np.zeros(0, dtype=np.float32), spec)
    with pytest.raises(InvalidSamplesError, match=re.escape("shape (2, 100)")):
        spectrogram_db(np.zeros((2, 100), dtype=np.float32), spec)
    bad = tone(440.0)
    bad[100] = np.nan
    with pytest.raises(InvalidSamplesError, match="NaN"):
        spectrogram_db(bad, spec)


def test_short_clip_gives_one_frame() -> None:
    assert spectrogram_db(tone(440.0, seconds=0.005), FeatureSpec()).shape == (128, 1)


# --- the spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "foo"}, "kind must be one of mel, linear, mfcc, lfcc, cqt, phase; got 'foo'"),
        ({"n_fft": 0}, "n_fft must be an integer in [16, 65536]; got 0"),
        ({"n_fft": 512.0}, "n_fft must be an integer in [16, 65536]; got 512.0"),
        ({"hop_length": 1024}, "hop_length must be an integer in [1, n_fft = 512]; got 1024"),
        ({"n_mels": 300}, "n_mels must be an integer in [1, n_fft // 2 + 1 = 257]; got 300"),
        (
            {"kind": "mfcc", "n_coeffs": 200},
            "n_coeffs must be an integer in [1, n_mels = 128]; got 200",
        ),
        ({"sample_rate": True}, "sample_rate must be an integer in [1000, 384000]; got True"),
        ({"fmin": -5.0}, "fmin must be a number in [0, sample_rate / 2) = [0, 8000) Hz; got -5.0"),
        (
            {"fmax": 9000.0},
            "fmax must be None or a number in (fmin, sample_rate / 2] = (0, 8000] Hz; got 9000.0",
        ),
        ({"fmin": 500.0, "fmax": 400.0}, "fmax must be None or a number in (fmin"),
        ({"top_db": 0.0}, "top_db must be a positive number of dB; got 0.0"),
        ({"top_db": float("nan")}, "top_db must be a positive number of dB; got nan"),
        ({"image_height": 8}, "image_height must be an integer in [16, 4096]; got 8"),
        ({"colormap": "jet"}, "colormap must be one of magma, viridis, inferno, gray; got 'jet'"),
        ({"kind": "cqt", "fmin": 7700.0}, "the cqt kind needs at least a quarter tone"),
    ],
)
def test_spec_validation_messages(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=re.escape(message)):
        FeatureSpec(**params)


def test_unused_fields_are_only_checked_loosely() -> None:
    # n_mels / n_coeffs only bound the kinds that use them.
    spec = FeatureSpec(kind="linear", n_fft=128, hop_length=64, n_mels=128, n_coeffs=500)
    assert spectrogram_db(tone(440.0), spec).shape == (65, 251)


def test_spec_is_frozen() -> None:
    spec = FeatureSpec()
    with pytest.raises(FrozenInstanceError):
        spec.kind = "mfcc"  # type: ignore[misc]


def test_to_dict_from_dict_round_trip() -> None:
    spec = FeatureSpec(
        kind="lfcc", n_fft=1024, hop_length=256, n_mels=70, n_coeffs=20, fmin=20.0,
        fmax=7000.0, top_db=70.0, image_height=128, image_width=256, colormap="viridis",
    )  # fmt: skip
    data = spec.to_dict()
    assert set(data) == {
        "kind", "sample_rate", "n_fft", "hop_length", "n_mels", "n_coeffs", "fmin", "fmax",
        "top_db", "image_height", "image_width", "colormap",
    }  # fmt: skip
    assert FeatureSpec.from_dict(data) == spec
    assert FeatureSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert FeatureSpec.from_dict({"kind": "mfcc"}) == FeatureSpec(kind="mfcc")
    assert hash(FeatureSpec.from_dict(FeatureSpec().to_dict())) == hash(FeatureSpec())


def test_from_dict_rejects_unknown_keys_and_non_mappings() -> None:
    with pytest.raises(InvalidSpecError, match="unknown feature spec keys: n_mfcc, window; "):
        FeatureSpec.from_dict({"kind": "mfcc", "n_mfcc": 20, "window": "hann"})
    with pytest.raises(InvalidSpecError, match="must be a mapping"):
        FeatureSpec.from_dict(["mel"])
    with pytest.raises(InvalidSpecError, match="kind must be one of"):
        FeatureSpec.from_dict({"kind": "chroma"})
