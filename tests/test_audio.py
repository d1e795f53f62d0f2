"""fakevoice.audio: every supported format decodes to 16 kHz mono; every bad input names itself."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest
import soundfile as sf
from av.audio.stream import AudioStream
from conftest import bench_module, speechlike, tone
from PIL import Image

from fakevoice.audio import (
    AUDIO_FORMATS,
    TARGET_SAMPLE_RATE,
    Audio,
    AudioFormat,
    encode_audio,
    load_audio,
    resample,
    write_wav,
)
from fakevoice.errors import (
    AudioError,
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    FakeVoiceError,
    FileTooLargeError,
    InvalidSamplesError,
    NotAudioError,
    NotFoundError,
    SilentAudioError,
    TruncatedAudioError,
    UnsupportedCodecError,
)
from fakevoice.settings import get_settings

ASTERISK_PROMPTS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
LEFT_HZ, RIGHT_HZ = 440.0, 660.0
SECONDS = 1.5

# What each format reports about itself once decoded: codec, container, rate (None = the source's).
EXPECTED: dict[str, tuple[str, str, int | None]] = {
    "wav": ("pcm_s16le", "wav", None),
    "flac": ("flac", "flac", None),
    "mp3": ("mp3", "mp3", None),
    "ogg": ("vorbis", "ogg", None),
    "opus": ("opus", "ogg", 48000),
    "webm": ("opus", "matroska,webm", 48000),
    "m4a": ("aac", "mov,mp4,m4a,3gp,3g2,mj2", None),
    "g722": ("g722", "g722", 16000),
}
RATES = (8000, 16000, 22050, 44100, 48000)
MATRIX = [
    (fmt, rate, channels)
    for fmt in AUDIO_FORMATS
    for rate in ((16000,) if fmt == "g722" else RATES)
    for channels in (1, 2)
]


def make_signal(sample_rate: int, channels: int) -> np.ndarray:
    """Mono: a 440 Hz tone. Stereo: 440 Hz left, 660 Hz right (so the downmix holds both)."""
    left = tone(LEFT_HZ, SECONDS, sample_rate)
    if channels == 1:
        return left
    return np.stack([left, tone(RIGHT_HZ, SECONDS, sample_rate)], axis=1)


def band_level(samples: np.ndarray, sample_rate: int, hz: float, width: float = 15.0) -> float:
    """Share of the signal's energy within ``width`` Hz of ``hz``."""
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / sample_rate)
    return float(power[np.abs(freqs - hz) < width].sum() / power.sum())


def wav_bytes(samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def check_decoded(audio: Audio, channels: int) -> None:
    """16 kHz mono float32 in [-1, 1], the right length, and the tones that went in."""
    assert audio.sample_rate == TARGET_SAMPLE_RATE
    assert audio.samples.ndim == 1
    assert audio.samples.dtype == np.float32
    assert np.max(np.abs(audio.samples)) <= 1.0
    # Lossy codecs add encoder delay / padding (AAC at 8 kHz: about 0.16 s).
    assert audio.duration == pytest.approx(SECONDS, abs=0.2)
    assert audio.info.duration == pytest.approx(SECONDS, abs=0.2)
    left = band_level(audio.samples, audio.sample_rate, LEFT_HZ)
    if channels == 1:
        assert left > 0.9
    else:
        right = band_level(audio.samples, audio.sample_rate, RIGHT_HZ)
        assert left > 0.35 and right > 0.35


@pytest.mark.parametrize(("fmt", "rate", "channels"), MATRIX)
def test_encoded_formats_decode_to_16k_mono(fmt: AudioFormat, rate: int, channels: int) -> None:
    data = encode_audio(make_signal(rate, channels), rate, fmt)
    audio = load_audio(data)
    check_decoded(audio, channels)
    codec, container, codec_rate = EXPECTED[fmt]
    assert audio.info.codec == codec
    assert audio.info.container == container
    assert audio.info.sample_rate == (codec_rate or rate)
    assert audio.info.channels == (1 if fmt == "g722" else channels)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("container", "subtype"),
    [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("FLAC", "PCM_16")],
)
def test_soundfile_written_files_decode(
    container: str, subtype: str, rate: int, channels: int
) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, make_signal(rate, channels), rate, format=container, subtype=subtype)
    audio = load_audio(buffer.getvalue())
    check_decoded(audio, channels)
    assert audio.info.sample_rate == rate
    assert audio.info.channels == channels


def test_other_target_rate_and_lossless_content() -> None:
    signal = speechlike(2.0, 44100)
    audio = load_audio(encode_audio(signal, 44100, "flac"), sample_rate=22050)
    assert audio.sample_rate == 22050
    expected = resample(signal, 44100, 22050)
    assert audio.samples.shape == expected.shape
    assert np.corrcoef(audio.samples, expected)[0, 1] > 0.999


def test_speechlike_envelope_survives_lossy_round_trip() -> None:
    signal = speechlike(2.0, TARGET_SAMPLE_RATE)
    for fmt in ("mp3", "opus", "g722", "m4a"):
        decoded = load_audio(encode_audio(signal, TARGET_SAMPLE_RATE, fmt)).samples
        n = min(decoded.size, signal.size) // 160 * 160
        # Codec delay shifts the signal by a few ms; 10 ms envelopes still line up.
        env_in = np.abs(signal[:n]).reshape(-1, 160).mean(axis=1)
        env_out = np.abs(decoded[:n]).reshape(-1, 160).mean(axis=1)
        assert np.corrcoef(env_in, env_out)[0, 1] > 0.9, fmt


def test_asterisk_g722_prompt_decodes_without_hint() -> None:
    prompts = sorted(ASTERISK_PROMPTS.glob("*.g722"), key=lambda p: -p.stat().st_size)
    if not prompts:
        pytest.skip("asterisk-core-sounds-en-g722 is not installed")
    prompt = next(p for p in prompts if p.stat().st_size < 80_000)  # a few seconds of speech
    audio = load_audio(prompt)
    assert audio.info.container == "g722"
    assert audio.info.codec == "g722"
    assert audio.info.sample_rate == 16000
    assert audio.info.duration == pytest.approx(prompt.stat().st_size / 8000, abs=0.01)
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    assert 0.005 < rms < 0.3
    assert band_level(audio.samples, 16000, 2000, width=2000) > 0.8  # speech: energy below 4 kHz
    hinted = load_audio(prompt, format_hint="g722")
    np.testing.assert_array_equal(hinted.samples, audio.samples)


def test_format_hint_forces_raw_g722(rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 16000, dtype=np.uint8).tobytes()
    with pytest.raises(NotAudioError):
        load_audio(data)  # random bytes do not pass for G.722 on their own
    forced = load_audio(data, format_hint="g722")
    assert forced.info.codec == "g722"
    assert forced.duration == pytest.approx(2.0)


def test_bytes_and_path_give_identical_results(tmp_path: Path) -> None:
    data = encode_audio(speechlike(1.0, 22050), 22050, "mp3")
    path = tmp_path / "clip.mp3"
    path.write_bytes(data)
    from_bytes, from_path, from_str = load_audio(data), load_audio(path), load_audio(str(path))
    np.testing.assert_array_equal(from_bytes.samples, from_path.samples)
    np.testing.assert_array_equal(from_bytes.samples, from_str.samples)
    assert from_bytes.info == from_path.info


def test_misleading_extension_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "really_mp3.wav"
    path.write_bytes(encode_audio(tone(LEFT_HZ, 1.0, 44100), 44100, "mp3"))
    audio = load_audio(path)
    assert audio.info.container == "mp3"
    assert band_level(audio.samples, audio.sample_rate, LEFT_HZ) > 0.9


def _tagged(fmt: str, artist: str) -> bytes:
    """A second of tone as FLAC (a Vorbis comment) or MP3 (an ID3v2 frame) naming an artist."""
    samples = tone(LEFT_HZ, 1.0, 16000)
    buffer = io.BytesIO()
    if fmt == "flac":
        with sf.SoundFile(buffer, "w", 16000, 1, format="FLAC") as handle:
            handle.artist = artist
            handle.write(samples)
        return buffer.getvalue()
    with av.open(buffer, mode="w", format="mp3") as container:
        container.metadata["artist"] = artist
        stream = cast(AudioStream, container.add_stream("libmp3lame", rate=16000, layout="mono"))
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_tags_that_are_not_utf8_do_not_stop_the_audio(fmt: str) -> None:
    """Taggers on Windows write Latin-1 where UTF-8 belongs: the tags are nothing we use, and
    reading them raised a UnicodeDecodeError (a 500 from the API) before any audio was read."""
    data = _tagged(fmt, "Beyonce")
    assert data.count(b"Beyonce") == 1
    audio = load_audio(data.replace(b"Beyonce", "Beyoncé".encode("latin-1")))
    assert audio.info.codec == fmt
    assert band_level(audio.samples, audio.sample_rate, LEFT_HZ) > 0.9


def test_sound_on_a_dc_offset_is_kept() -> None:
    audio = load_audio(wav_bytes(0.5 + tone(LEFT_HZ, 1.0, 16000, amplitude=0.01), 16000))
    assert band_level(audio.samples - audio.samples.mean(), audio.sample_rate, LEFT_HZ) > 0.9


def test_loud_float_wav_is_scaled_into_range() -> None:
    audio = load_audio(wav_bytes(tone(LEFT_HZ, 1.0, 16000, amplitude=4.0), 16000, "FLOAT"))
    assert np.max(np.abs(audio.samples)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("format_hint", [None, "wav"])  # libsndfile reads it, or FFmpeg
def test_a_long_file_decodes_as_the_whole_array_would(format_hint: str | None) -> None:
    """Decoding downmixes, measures and resamples a block at a time: the samples and the clipped
    share are exactly those of the whole recording, here a float file flattened at 1.5 early on
    and at 3.0 (its peak, so the only full scale that counts) near the end."""
    n = 48000 * 12
    stereo = np.stack([speechlike(12.0, 48000), speechlike(12.0, 48000, seed=1)], axis=1)
    stereo *= np.linspace(1.0, 40.0, n, dtype=np.float32)[:, None]
    stereo[: n // 2] = np.clip(stereo[: n // 2], -1.5, 1.5)
    stereo = np.clip(stereo, -3.0, 3.0)
    audio = load_audio(wav_bytes(stereo, 48000, "FLOAT"), format_hint=format_hint)

    mono = stereo.mean(axis=1, dtype=np.float64).astype(np.float32)
    expected = resample(mono, 48000, TARGET_SAMPLE_RATE)
    expected /= np.max(np.abs(expected))
    np.testing.assert_array_equal(audio.samples, expected)
    magnitude = np.abs(mono)
    clipped = np.mean(magnitude >= 0.999 * float(magnitude.max()))
    assert audio.info.clipped_fraction == clipped
    assert 0.05 < clipped < 0.5  # the samples flattened at 3.0, none of those at 1.5
    assert audio.info.duration == 12.0 and audio.info.channels == 2


def square_wave_file(container: str, seconds: float, sample_rate: int, channels: int) -> bytes:
    """A 23 Hz square wave at 192 kHz, written a block at a time (bench/decoding.py's signal):
    minutes of samples at a high rate in little memory, and as FLAC a small file."""
    return cast(
        bytes,
        bench_module("decoding.py").square_wave_file(container, seconds, sample_rate, channels),
    )


@pytest.mark.parametrize(("container", "seconds"), [("FLAC", 120.0), ("WAV", 10.0)])
def test_decoding_memory_follows_the_output_not_the_file(container: str, seconds: float) -> None:
    """Memory grew with the file's rate and channels: decoding kept every frame, then a joined
    copy, then whole-length temporaries, all at the file's rate, before resampling (a 1 MB FLAC
    of 590 s at 384 kHz took 2.2 GiB). Now it keeps only the 16 kHz output and a block in hand.

    tracemalloc sees NumPy's arrays: the old code peaked at 198 MiB here for the FLAC and 51 MiB
    for the WAV, ten times the bound."""
    data = square_wave_file(container, seconds, 192000, 4)
    tracemalloc.start()
    try:
        audio = load_audio(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.info.sample_rate == 192000 and audio.info.channels == 4
    assert audio.duration == pytest.approx(seconds)
    assert np.mean(np.abs(audio.samples)) == pytest.approx(0.25, rel=0.05)
    # The output, its joining, and a few MiB for the block being decoded.
    assert peak < 2 * audio.samples.nbytes + 4 * 2**20


# --- bad input -----------------------------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _video_only_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def _wav_with_unknown_codec() -> bytes:
    data = bytearray(wav_bytes(tone(LEFT_HZ, 1.0, 16000), 16000))
    fmt_chunk = data.find(b"fmt ")
    data[fmt_chunk + 8 : fmt_chunk + 10] = (0x1234).to_bytes(2, "little")
    return bytes(data)


def _with_value(value: float) -> bytes:
    samples = tone(LEFT_HZ, 1.0, 16000)
    samples[100] = value
    return wav_bytes(samples, 16000, "FLOAT")


def _u8_wav(body: bytes) -> bytes:
    data = bytearray(wav_bytes(np.zeros(len(body), np.float32), 16000, "PCM_U8"))
    start = data.find(b"data") + 8
    data[start : start + len(body)] = body
    return bytes(data)


def _cut(fmt: AudioFormat) -> Callable[[], bytes]:
    def make() -> bytes:
        data = encode_audio(tone(LEFT_HZ, 3.0, 16000), 16000, fmt)
        return data[: len(data) // 2]

    return make


BAD_INPUTS: dict[str, tuple[Callable[[], bytes], type[FakeVoiceError], str]] = {
    "empty": (lambda: b"", EmptyAudioError, "empty"),
    "random bytes": (
        lambda: np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes(),
        NotAudioError,
        "not a recording",
    ),
    "text": (lambda: ("The quick brown fox. " * 400).encode(), NotAudioError, "not a recording"),
    "png": (_png, NotAudioError, "png"),
    "wav without samples": (
        lambda: wav_bytes(np.zeros(0, np.float32), 16000),
        EmptyAudioError,
        "no audio samples",
    ),
    "zero bytes": (lambda: bytes(16000), NotAudioError, "not a recording"),
    "video only": (_video_only_mp4, UnsupportedCodecError, "no audio track"),
    "unknown wav codec": (_wav_with_unknown_codec, UnsupportedCodecError, "codec"),
    "odd sample rate": (
        lambda: wav_bytes(tone(50, 2.0, 500), 500),
        UnsupportedCodecError,
        "The sample rate is 500 Hz",
    ),
    "nan": (lambda: _with_value(np.nan), InvalidSamplesError, "NaN"),
    "inf": (lambda: _with_value(np.inf), InvalidSamplesError, "1 of 16000 samples"),
    "digital silence": (
        lambda: wav_bytes(np.zeros(16000, np.float32), 16000),
        SilentAudioError,
        "silent",
    ),
    "constant level": (
        lambda: wav_bytes(np.full(16000, 0.5, np.float32), 16000),
        SilentAudioError,
        "silent",
    ),
    "8-bit zero bytes": (  # unsigned 8-bit: every sample at -1.0, no sound
        lambda: _u8_wav(bytes(16000)),
        SilentAudioError,
        "silent",
    ),
    "near silence on an offset": (
        lambda: wav_bytes(0.3 + tone(LEFT_HZ, 1.0, 16000, amplitude=5e-5), 16000, "FLOAT"),
        SilentAudioError,
        "dBFS",
    ),
    "stereo in opposite phase": (
        lambda: wav_bytes(_opposite_phase(), 16000),
        SilentAudioError,
        "2 channels cancel each other out when mixed to mono",
    ),
    "flac in opposite phase": (
        lambda: _flac(_opposite_phase()),
        SilentAudioError,
        "one is the other upside down",
    ),
    "stereo digital silence": (
        lambda: wav_bytes(np.zeros((16000, 2), np.float32), 16000),
        SilentAudioError,
        "The recording is silent",
    ),
    "near silence": (
        lambda: wav_bytes(tone(LEFT_HZ, 1.0, 16000, amplitude=5e-5), 16000, "FLOAT"),
        SilentAudioError,
        "dBFS",
    ),
    "too short": (
        lambda: wav_bytes(tone(LEFT_HZ, 0.3, 16000), 16000),
        AudioTooShortError,
        "The recording is 0.3 s long; at least 0.5 s of audio is needed.",
    ),
    **{
        f"{fmt} cut in half": (_cut(fmt), TruncatedAudioError, "cut short")
        for fmt in ("wav", "flac", "mp3", "ogg", "opus", "webm", "m4a")
    },
}


def _opposite_phase() -> np.ndarray:
    """A second of a voice-like tone, left channel and its inverse on the right."""
    left = speechlike(1.0, seed=5)
    return np.stack([left, -left], axis=1)


def _flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="FLAC")
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_its_own_error(case: str, isolated_settings: Path) -> None:
    make, error, words = BAD_INPUTS[case]
    with pytest.raises(error) as caught:
        load_audio(make())
    message = str(caught.value)
    assert words in message
    assert message.endswith(".") and message[0].isupper()


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(NotAudioError, match="not a file"):
        load_audio(tmp_path)
    (tmp_path / "empty.wav").touch()
    with pytest.raises(EmptyAudioError):
        load_audio(tmp_path / "empty.wav")


def test_oversize_path_is_rejected_before_reading(
    tmp_path: Path, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.wav"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: no data blocks written

    def refuse_to_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened before its size was checked")

    monkeypatch.setattr(Path, "open", refuse_to_open)
    with pytest.raises(FileTooLargeError) as caught:
        load_audio(path)
    assert "100.0 MiB" in str(caught.value) and "50.0 MiB" in str(caught.value)


def test_oversize_bytes_and_explicit_limit() -> None:
    data = wav_bytes(tone(LEFT_HZ, 1.0, 16000), 16000)
    with pytest.raises(FileTooLargeError, match="up to 1000 bytes"):
        load_audio(data, max_bytes=1000)
    assert load_audio(data, max_bytes=len(data)).duration == pytest.approx(1.0)


def test_long_recording_is_rejected_as_too_long() -> None:
    data = encode_audio(tone(LEFT_HZ, 5.0, 16000), 16000, "mp3")
    with pytest.raises(AudioTooLongError, match="at most 2 s"):
        load_audio(data, max_seconds=2)
    assert load_audio(data, max_seconds=6).duration == pytest.approx(5.0, abs=0.1)


def test_long_headerless_stream_is_stopped_early() -> None:
    # Raw G.722 has no header: only the decoder can find the length.
    data = encode_audio(speechlike(4.0, 16000), 16000, "g722")
    with pytest.raises(AudioTooLongError, match="at most 1 s"):
        load_audio(data, format_hint="g722", max_seconds=1)


def test_limits_default_to_settings(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = wav_bytes(tone(LEFT_HZ, 1.0, 16000), 16000)
    monkeypatch.setenv("FAKEVOICE_MIN_AUDIO_SECONDS", "2")
    monkeypatch.setenv("FAKEVOICE_MAX_AUDIO_SECONDS", "3")
    get_settings.cache_clear()
    with pytest.raises(AudioTooShortError, match="at least 2 s"):
        load_audio(data)
    assert load_audio(data, min_seconds=0.5).duration == pytest.approx(1.0)
    with pytest.raises(AudioTooLongError, match="at most 3 s"):
        load_audio(wav_bytes(tone(LEFT_HZ, 4.0, 16000), 16000))


def test_every_audio_error_is_a_fakevoice_error() -> None:
    for error in (EmptyAudioError, NotAudioError, TruncatedAudioError, SilentAudioError):
        assert issubclass(error, AudioError) and issubclass(error, FakeVoiceError)


# --- resample, encode, write -------------------------------------------------------------------


@pytest.mark.parametrize(("orig", "target"), [(44100, 16000), (8000, 16000), (16000, 48000)])
def test_resample_keeps_frequency_and_length(orig: int, target: int) -> None:
    out = resample(tone(LEFT_HZ, 1.0, orig), orig, target)
    assert out.dtype == np.float32
    assert out.size == pytest.approx(target, abs=2)
    assert band_level(out, target, LEFT_HZ) > 0.95


def test_resample_same_rate_is_a_copy() -> None:
    x = tone(LEFT_HZ, 0.1, 16000)
    y = resample(x, 16000, 16000)
    np.testing.assert_array_equal(x, y)
    assert y is not x


def test_encode_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="wav, flac, mp3"):
        encode_audio(tone(LEFT_HZ, 0.1, 16000), 16000, "aiff")  # type: ignore[arg-type]


def test_write_wav_is_pcm16_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    signal = speechlike(1.0, 16000)
    path = tmp_path / "clip.wav"
    path.write_bytes(b"old contents")
    write_wav(path, signal, 16000)
    assert sf.info(path).subtype == "PCM_16"
    assert os.listdir(tmp_path) == ["clip.wav"]
    audio = load_audio(path)
    np.testing.assert_allclose(audio.samples, signal, atol=1 / 32768 + 1e-6)
