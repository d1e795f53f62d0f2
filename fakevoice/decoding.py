"""Reading audio files: bounded reads, container probing, decoding to mono at the output rate,
and the checks that turn every unusable file into an error a person understands.

The reading half of :mod:`fakevoice.audio` (whose :func:`~fakevoice.audio.load_audio` is the only
entry point the rest of the code uses). Decoding goes through PyAV (FFmpeg); PCM WAV is read
directly, and headerless G.722 is recognised by its content. Either way the samples are
downmixed, measured and resampled a block at a time as they are decoded
(:class:`~fakevoice.sample_stream.SampleStream`), so memory follows the output, not the file's own
rate and channel count.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf

from fakevoice.audio_headers import check_complete, header_seconds
from fakevoice.errors import (
    AudioTooLongError,
    AudioTooShortError,
    EmptyAudioError,
    FileTooLargeError,
    InvalidSamplesError,
    NotAudioError,
    NotFoundError,
    SilentAudioError,
    TruncatedAudioError,
    UnsupportedCodecError,
)
from fakevoice.sample_stream import BLOCK_SAMPLES, SampleStream, SampleSummary, resample

logger = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4
"""Peak amplitude about the mean (full scale = 1) below which a recording counts as digital
silence."""
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
G722_SAMPLE_RATE = 16000
G722_BYTES_PER_SECOND = 8000
_TRUNCATION_TOLERANCE_S = 0.1
"""Decoded audio may fall short of the header's duration by codec padding, never by more."""

# FFmpeg demuxers that read still images or text: a match means "not audio", not "no audio codec".
_NON_AUDIO_FORMATS = {"image2", "tty", "gif", "webp", "apng", "bin", "srt", "ass", "webvtt"}


@dataclass(frozen=True)
class AudioInfo:
    """What the file itself held, before downmixing and resampling."""

    sample_rate: int
    """Original sample rate, Hz."""
    channels: int
    """Original channel count."""
    duration: float
    """Decoded length, seconds."""
    codec: str
    """FFmpeg codec name, e.g. ``"pcm_s16le"``, ``"flac"``, ``"mp3"``, ``"opus"``, ``"g722"``."""
    container: str
    """FFmpeg container name, e.g. ``"wav"``, ``"ogg"``, ``"matroska,webm"``, ``"g722"``."""
    clipped_fraction: float = 0.0
    """Share of the (downmixed) samples at full scale, ``|x| >= 0.999``, before resampling (of
    the peak instead of 1.0 for a float file louder than full scale, which is scaled down)."""


@dataclass(frozen=True)
class Decoded:
    """The recording as ``(n,)`` float32 mono at ``sample_rate``, and what the file held."""

    samples: np.ndarray  # (n,) float32 mono at sample_rate
    sample_rate: int
    info: AudioInfo
    summary: SampleSummary
    """The samples at the file's own rate (``info.sample_rate``), measured while decoding."""


def read_bounded(source: str | Path | bytes, max_bytes: int) -> bytes:
    """The file's bytes; a path's size is checked before it is read, and never over-read."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"There is no audio file at {path}.") from None
        if not path.is_file():
            raise NotAudioError(f"{path} is not a file.")
        _check_size(size, max_bytes)
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)  # the file may have grown since stat()
    _check_size(len(data), max_bytes)
    return data


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise FileTooLargeError(
            f"The file is {size_text(size)}; files up to {size_text(max_bytes)} are accepted."
        )
    if size == 0:
        raise EmptyAudioError("The file is empty (0 bytes); it holds no audio.")


def size_text(n_bytes: int) -> str:
    """A size for people, in the binary units the settings are given in (50 MiB, not 52.4 MB)."""
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MiB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.1f} KiB"
    return f"{n_bytes} bytes"


def _container_magic(data: bytes) -> str | None:
    """The container a file's first bytes announce, or None when they announce none."""
    head = data[:12]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska,webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    return None


def decode(data: bytes, max_seconds: float, format_hint: str | None, sample_rate: int) -> Decoded:
    """Probe and decode ``data`` to mono at ``sample_rate`` Hz; raw G.722 is the fallback for
    headerless, unrecognised bytes."""
    if format_hint is not None:
        return _decode_with_av(data, max_seconds, format_hint, sample_rate)
    magic = _container_magic(data)
    check_complete(data, magic)
    if magic == "wav":
        fast = _decode_pcm_wav(data, max_seconds, sample_rate)
        if fast is not None:
            return fast
    try:
        return _decode_with_av(data, max_seconds, None, sample_rate)
    except NotAudioError:
        if magic is not None:
            raise TruncatedAudioError(
                f"The file starts like {magic} audio but cannot be read: it is damaged or cut short."
            ) from None
        g722 = _decode_raw_g722(data, max_seconds, sample_rate)
        if g722 is None:
            raise
        return g722


_WAV_CODECS = {
    "PCM_U8": "pcm_u8",
    "PCM_16": "pcm_s16le",
    "PCM_24": "pcm_s24le",
    "PCM_32": "pcm_s32le",
    "FLOAT": "pcm_f32le",
    "DOUBLE": "pcm_f64le",
}


def _decode_pcm_wav(data: bytes, max_seconds: float, sample_rate: int) -> Decoded | None:
    """Plain PCM / float WAV straight through libsndfile (a fast path: no FFmpeg probing).

    Returns None for anything else (other codecs, odd headers), which then goes through FFmpeg,
    so the two paths agree on everything but speed.
    """
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            codec = _WAV_CODECS.get(handle.subtype)
            rate, channels, frames = (
                int(handle.samplerate),
                int(handle.channels),
                int(handle.frames),
            )
            if codec is None or handle.format not in {"WAV", "WAVEX", "RF64"} or frames <= 0:
                return None
            _check_rate(rate)
            if np.isfinite(max_seconds) and frames > int(max_seconds * rate) + 1:
                raise AudioTooLongError(
                    _too_long_message(frames / rate, max_seconds, frames / rate)
                )
            sample_stream = SampleStream(rate, sample_rate)
            for block in handle.blocks(BLOCK_SAMPLES, dtype="float32", always_2d=True):
                sample_stream.add(_downmix(block), _channel_peak(block.T))
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    if sample_stream.n_samples == 0:
        return None
    samples, summary = sample_stream.finish()
    info = AudioInfo(
        sample_rate=rate,
        channels=channels,
        duration=summary.n_samples / rate,
        codec=codec,
        container="wav",
        clipped_fraction=summary.clipped_fraction,
    )
    return Decoded(samples=samples, sample_rate=sample_rate, info=info, summary=summary)


def _channel_peak(channels: np.ndarray) -> float:
    """The loudest sample of any one of ``(channels, n)`` float samples about each channel's
    mean (0 for one channel: the downmix is that channel)."""
    if channels.shape[0] < 2 or channels.shape[1] == 0:
        return 0.0
    return float(np.abs(channels - channels.mean(axis=1, keepdims=True)).max())


def _downmix(block: np.ndarray) -> np.ndarray:
    """``(n, channels)`` float32 as ``(n,)`` float32, the channels' mean."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    return block.mean(axis=1, dtype=np.float64).astype(np.float32)


def _decode_raw_g722(data: bytes, max_seconds: float, sample_rate: int) -> Decoded | None:
    """Decode headerless bytes as G.722 if the result is plausible audio, else None."""
    # G.722 is 64 kbit/s: the byte count gives the length, so a long file is judged on its start.
    limit = int(min(max_seconds, 1e6) * G722_BYTES_PER_SECOND) + G722_BYTES_PER_SECOND
    try:
        decoded = _decode_with_av(data[:limit], float("inf"), "g722", G722_SAMPLE_RATE)
    except (NotAudioError, TruncatedAudioError, UnsupportedCodecError):
        return None
    if not _plausible_g722(decoded.samples):
        return None
    logger.info("no container recognised; decoded %d bytes as raw G.722", len(data))
    seconds = len(data) / G722_BYTES_PER_SECOND
    if seconds > max_seconds:
        raise AudioTooLongError(_too_long_message(seconds, max_seconds, seconds))
    if sample_rate == G722_SAMPLE_RATE:
        return decoded
    return replace(
        decoded,
        samples=resample(decoded.samples, G722_SAMPLE_RATE, sample_rate),
        sample_rate=sample_rate,
    )


def _plausible_g722(x: np.ndarray) -> bool:
    """Whether samples decoded from headerless bytes as G.722 sound like a recording.

    Arbitrary bytes (text, compressed or random data) drive the ADPCM decoder into loud noise
    (RMS above -10 dBFS) that clips and fills the 4-8 kHz band. Real G.722 prompts never clip,
    and where their energy sits mostly above 4 kHz (a hiss-like word, line noise) they are quiet.

    Args:
        x: ``(n,)`` float32 at 16 kHz.
    """
    if x.size < 512:
        return False
    clipped = float(np.mean(np.abs(x) >= 0.99))
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    frames = x[: x.size // 512 * 512].reshape(-1, 512)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
    high_band = float(power[128:].sum() / max(float(power.sum()), 1e-20))
    return clipped < 1e-3 and not (high_band > 0.35 and rms > 0.1)


def _decode_with_av(
    data: bytes, max_seconds: float, container_format: str | None, sample_rate: int
) -> Decoded:
    """Decode the first audio stream to mono float32 at ``sample_rate`` Hz."""
    try:
        # Tags are never used; one not in UTF-8 (Latin-1 from a Windows tagger) must not fail.
        container = av.open(io.BytesIO(data), format=container_format, metadata_errors="replace")
    except av.error.FFmpegError:
        raise NotAudioError(
            "The file is not a recording in a format we can read "
            "(WAV, FLAC, MP3, OGG, Opus, WebM, M4A/AAC or G.722)."
        ) from None
    with container:
        format_name = container.format.name
        if not container.streams.audio:
            if format_name in _NON_AUDIO_FORMATS or format_name.endswith("_pipe"):
                raise NotAudioError(
                    f"The file is not audio (it looks like {format_name.removesuffix('_pipe')})."
                )
            raise UnsupportedCodecError(
                f"The {format_name} file has no audio track (it holds only "
                f"{', '.join(sorted({s.type for s in container.streams})) or 'nothing'})."
            )
        stream = container.streams.audio[0]
        return _decode_stream(container, stream, data, format_name, max_seconds, sample_rate)


def _decode_stream(
    container: Any,
    stream: Any,
    data: bytes,
    format_name: str,
    max_seconds: float,
    sample_rate: int,
) -> Decoded:
    codec = stream.codec_context
    decoder = getattr(codec, "codec", None)
    codec_name = _CODEC_NAMES.get(decoder.canonical_name, decoder.canonical_name) if decoder else ""
    if decoder is None or not decoder.is_decoder:
        tag = f" ({codec_name})" if codec_name else ""
        raise UnsupportedCodecError(
            f"The {format_name} file uses an audio codec{tag} we cannot decode."
        )
    rate = int(codec.sample_rate or 0)
    _check_rate(rate)
    announced = header_seconds(container, stream, data)
    limit = int(max_seconds * rate) + 1 if np.isfinite(max_seconds) else None
    sample_stream = SampleStream(rate, sample_rate)
    n_decoded = 0
    channels = 0
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                mono, frame_channels, frame_peak = _frame_to_mono(frame)
                if frame.sample_rate != rate:
                    if n_decoded == 0:  # HE-AAC reports its core rate until the first frame
                        rate = int(frame.sample_rate)
                        _check_rate(rate)
                        limit = int(max_seconds * rate) + 1 if np.isfinite(max_seconds) else None
                        sample_stream = SampleStream(rate, sample_rate)
                    else:
                        mono = resample(mono, int(frame.sample_rate), rate)
                channels = max(channels, frame_channels)
                sample_stream.add(mono, frame_peak)
                n_decoded += mono.size
                if limit is not None and n_decoded > limit:
                    raise AudioTooLongError(
                        _too_long_message(n_decoded / rate, max_seconds, announced)
                    )
    except av.error.FFmpegError as error:
        if n_decoded == 0:
            if isinstance(error, av.error.DecoderNotFoundError | av.error.PatchWelcomeError):
                raise UnsupportedCodecError(
                    f"The audio codec ({codec_name}) is not one we can decode."
                ) from None
            raise NotAudioError(f"The {format_name} file holds no audio we can decode.") from None
        raise TruncatedAudioError(
            f"The {format_name} file is damaged or cut short: decoding failed after "
            f"{n_decoded / rate:.1f} s."
        ) from None
    if n_decoded == 0:
        raise EmptyAudioError(f"The {format_name} file holds no audio samples.")
    seconds = n_decoded / rate
    if announced is not None and seconds < announced - _TRUNCATION_TOLERANCE_S:
        raise TruncatedAudioError(
            f"The file is cut short: its header promises {announced:.1f} s of audio but "
            f"only {seconds:.1f} s is there."
        )
    samples, summary = sample_stream.finish()
    info = AudioInfo(
        sample_rate=rate,
        channels=channels or int(codec.channels or 1),
        duration=seconds,
        codec=codec_name,
        container=format_name,
        clipped_fraction=summary.clipped_fraction,
    )
    return Decoded(samples=samples, sample_rate=sample_rate, info=info, summary=summary)


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedCodecError(
            f"The sample rate is {rate} Hz; rates from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz "
            "are supported."
        )


def _too_long_message(decoded_seconds: float, max_seconds: float, header: float | None) -> str:
    length = (
        f"{header:.1f} s"
        if header is not None and header > max_seconds
        else (f"more than {decoded_seconds:.1f} s")
    )
    return f"The recording is {length} long; at most {max_seconds:g} s of audio is accepted."


_CODEC_NAMES = {"adpcm_g722": "g722"}
_SAMPLE_SCALE = {
    "u8": 128.0,
    "s16": 32768.0,
    "s32": 2.0**31,
    "s64": 2.0**63,
    "flt": 1.0,
    "dbl": 1.0,
}


def _frame_to_mono(frame: Any) -> tuple[np.ndarray, int, float]:
    """A decoded frame as ``(n,)`` float32 mono (channel mean), its channel count and its
    loudest channel's peak (:func:`_channel_peak`)."""
    array = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    x = array.reshape(channels, -1) if fmt.is_planar else array.reshape(-1, channels).T
    name = fmt.name.removesuffix("p")
    if name == "u8":
        mono = (x.astype(np.float32).mean(axis=0) - 128.0) / 128.0
        scale = 128.0
        wide = x.astype(np.float64) if channels > 1 else None
    else:
        scale = _SAMPLE_SCALE[name]
        wide = x.astype(np.float64)
        mono = wide.mean(axis=0) / scale
    peak = _channel_peak(wide) / scale if wide is not None and channels > 1 else 0.0
    return mono.astype(np.float32), channels, peak


def check_content(decoded: Decoded, min_seconds: float) -> None:
    summary = decoded.summary
    if summary.n_invalid:
        raise InvalidSamplesError(
            f"The recording holds invalid sample values (NaN or infinity): {summary.n_invalid} "
            f"of {summary.n_samples} samples."
        )
    seconds = decoded.info.duration
    if seconds < min_seconds:
        raise AudioTooShortError(
            f"The recording is {seconds:.1f} s long; at least {min_seconds:g} s of audio is needed."
        )
    # Measured about the mean: a constant offset (DC) is no sound, and an 8-bit file of zero
    # bytes, at -1.0 throughout, is as silent as one at 0.0.
    offset = summary.mean
    peak = max(summary.maximum - offset, offset - summary.minimum, 0.0)
    if peak < SILENCE_PEAK <= summary.channel_peak:
        raise SilentAudioError(
            f"The recording's {decoded.info.channels} channels cancel each other out when mixed "
            f"to mono (each has sound, up to {_dbfs(summary.channel_peak)}, but one is the "
            "other upside down: a wiring or editing fault). Save one channel as a mono file and "
            "try again."
        )
    if peak < SILENCE_PEAK:
        raise SilentAudioError(
            f"The recording is silent (peak level {_dbfs(peak)}); there is no sound to analyse."
        )


def _dbfs(peak: float) -> str:
    return "zero" if peak == 0 else f"{20 * np.log10(peak):.0f} dBFS"
