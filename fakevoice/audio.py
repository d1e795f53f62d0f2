"""The only way audio comes in: any supported file or bytes -> mono float32 at a target rate.

Decoding goes through PyAV (FFmpeg), so WAV, FLAC, MP3, OGG/Vorbis, Opus (Ogg or WebM), WebM,
M4A/AAC and raw G.722 all take one path. The file name is never trusted: the container is probed
from the content, and headerless G.722 (the Debian Asterisk prompts) is tried only when no
container is recognised and the result looks like real audio, or when the caller says so with
``format_hint="g722"``. Every way a file can be unusable ends in an :class:`~fakevoice.errors.AudioError`
subclass (or :class:`~fakevoice.errors.FileTooLargeError`) whose message a person understands.
The reading itself lives in :mod:`fakevoice.decoding`; this module is the API and the encoders.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av
import numpy as np
import soundfile as sf
from av.audio.stream import AudioStream

from fakevoice.decoding import (
    G722_SAMPLE_RATE,
    AudioInfo,
    check_content,
    decode,
    read_bounded,
)
from fakevoice.sample_stream import resample
from fakevoice.settings import get_settings

__all__ = [
    "AUDIO_FORMATS",
    "TARGET_SAMPLE_RATE",
    "Audio",
    "AudioFormat",
    "AudioInfo",
    "encode_audio",
    "load_audio",
    "resample",
    "write_wav",
]

TARGET_SAMPLE_RATE = 16000
AudioFormat = Literal["wav", "flac", "mp3", "ogg", "opus", "webm", "m4a", "g722"]
AUDIO_FORMATS: tuple[AudioFormat, ...] = (
    "wav",
    "flac",
    "mp3",
    "ogg",
    "opus",
    "webm",
    "m4a",
    "g722",
)

OPUS_SAMPLE_RATE = 48000

# (encoder, container, codec rate or None to keep the input rate) per output format.
_ENCODERS: dict[str, tuple[str, str, int | None]] = {
    "wav": ("pcm_s16le", "wav", None),
    "flac": ("flac", "flac", None),
    "mp3": ("libmp3lame", "mp3", None),
    "opus": ("libopus", "ogg", OPUS_SAMPLE_RATE),
    "webm": ("libopus", "webm", OPUS_SAMPLE_RATE),
    "m4a": ("aac", "ipod", None),
    "g722": ("g722", "g722", G722_SAMPLE_RATE),
}
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True)
class Audio:
    """A decoded recording: ``samples`` is ``(n,)`` float32 mono in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    info: AudioInfo

    @property
    def duration(self) -> float:
        """Length of ``samples`` in seconds."""
        return self.samples.size / self.sample_rate


# --- public API --------------------------------------------------------------------------------


def load_audio(
    source: str | Path | bytes,
    sample_rate: int = TARGET_SAMPLE_RATE,
    *,
    max_seconds: float | None = None,
    min_seconds: float | None = None,
    max_bytes: int | None = None,
    format_hint: str | None = None,
) -> Audio:
    """Decode a recording to mono float32 at ``sample_rate``.

    Args:
        source: a path, or the file's bytes. The name's extension is ignored.
        sample_rate: output rate, Hz.
        max_seconds: longest recording accepted (default ``settings.max_audio_seconds``);
            decoding stops as soon as it is exceeded.
        min_seconds: shortest recording accepted (default ``settings.min_audio_seconds``).
        max_bytes: largest file accepted (default ``settings.max_upload_bytes``); a path's size
            is checked before anything is read.
        format_hint: an FFmpeg demuxer name to use instead of probing, e.g. ``"g722"`` for a
            headerless G.722 bitstream.

    Returns:
        :class:`Audio` with ``(n,)`` float32 samples in [-1, 1] and the original's metadata.

    Raises:
        FileTooLargeError, EmptyAudioError, NotAudioError, TruncatedAudioError,
        UnsupportedCodecError, InvalidSamplesError, AudioTooLongError, AudioTooShortError,
        SilentAudioError: each with a message for the user.
    """
    settings = get_settings()
    max_seconds = settings.max_audio_seconds if max_seconds is None else max_seconds
    min_seconds = settings.min_audio_seconds if min_seconds is None else min_seconds
    max_bytes = settings.max_upload_bytes if max_bytes is None else max_bytes
    data = read_bounded(source, max_bytes)
    decoded = decode(data, max_seconds, format_hint, sample_rate)
    check_content(decoded, min_seconds)
    samples = decoded.samples  # float32, the decoder's own array
    # A float file holds samples beyond 1.0 whole: it is scaled down, not flattened.
    peak = max(float(samples.max()), -float(samples.min()))
    if peak > 1.0:
        samples /= peak
    return Audio(samples=samples, sample_rate=sample_rate, info=decoded.info)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: AudioFormat) -> bytes:
    """Encode audio as a complete file in one of :data:`AUDIO_FORMATS`.

    wav is PCM 16-bit, flac lossless, mp3 LAME, ogg Vorbis (libvorbis through libsndfile),
    opus Opus in Ogg at 48 kHz, webm Opus in WebM at 48 kHz, m4a AAC in MP4, g722 a raw
    G.722 bitstream at 16 kHz mono. Rates a codec cannot take are converted with :func:`resample`.

    Args:
        samples: ``(n,)`` or ``(n, channels)`` float audio in [-1, 1].
        sample_rate: rate of ``samples``, Hz.
        fmt: output format.

    Returns:
        The encoded file's bytes.
    """
    x = np.asarray(samples, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"samples must be (n,) or (n, channels); got shape {samples.shape}")
    x = np.clip(x, -1.0, 1.0)
    if fmt == "ogg":
        return _encode_with_soundfile(x, sample_rate, "OGG", "VORBIS")
    if fmt not in _ENCODERS:
        raise ValueError(f"fmt must be one of {', '.join(AUDIO_FORMATS)}; got {fmt!r}")
    encoder, container, codec_rate = _ENCODERS[fmt]
    if fmt == "g722" and x.shape[1] > 1:
        x = x.mean(axis=1, keepdims=True)
    if fmt == "mp3" and sample_rate not in _MP3_RATES:
        codec_rate = min(_MP3_RATES, key=lambda r: (r < sample_rate, abs(r - sample_rate)))
    if codec_rate is not None and codec_rate != sample_rate:
        x = resample(x, sample_rate, codec_rate)
        sample_rate = codec_rate
    return _encode_with_av(x, sample_rate, encoder, container)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically (a temporary file in the same folder, then rename).

    Args:
        path: destination; its folder must exist.
        samples: ``(n,)`` or ``(n, channels)`` float audio in [-1, 1] (clipped beyond).
        sample_rate: Hz.
    """
    path = Path(path)
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, x, sample_rate, format="WAV", subtype="PCM_16")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- encoding ----------------------------------------------------------------------------------


def _encode_with_soundfile(x: np.ndarray, sample_rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _encode_with_av(x: np.ndarray, sample_rate: int, encoder: str, container_format: str) -> bytes:
    """Encode ``(n, channels)`` float32 with an FFmpeg encoder into a container, in memory."""
    channels = x.shape[1]
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = cast(AudioStream, container.add_stream(encoder, rate=sample_rate, layout=layout))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        # A start time lets the muxer record the encoder's priming (the MP4 edit list for AAC),
        # so decoders trim it and the round trip stays aligned.
        frame.pts = 0
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
