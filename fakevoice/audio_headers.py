"""What an audio file's header promises, and whether the file holds all of it.

FFmpeg decodes a WAV or Ogg file cut short up to the cut without a word, and reports a length
for formats whose header has none by guessing from the bit rate. :func:`check_complete` refuses
WAV and Ogg files cut short from their bytes alone; :func:`header_seconds` gives the length a
header really announces (None for a guess), which :mod:`fakevoice.decoding` compares with what it
decoded.
"""

from __future__ import annotations

from typing import Any

import av

from fakevoice.errors import TruncatedAudioError

# Containers whose header states the length (MP3 only with a Xing, Info or VBRI frame).
_HEADER_DURATION_FORMATS = {"wav", "flac", "mp3", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2"}


def check_complete(data: bytes, magic: str | None) -> None:
    """Reject WAV and Ogg files cut short, which FFmpeg would decode silently up to the cut."""
    if magic == "wav":
        missing = _wav_missing_seconds(data)
        if missing is not None and missing > 0.01:
            raise TruncatedAudioError(
                f"The WAV file is cut short: its header promises {missing:.2f} s more audio "
                "than the file holds."
            )
    elif magic == "ogg" and not _ogg_last_page_complete(data):
        raise TruncatedAudioError(
            "The Ogg file is cut short: its last page is incomplete or its end-of-stream mark "
            "is missing."
        )


def _wav_missing_seconds(data: bytes) -> float | None:
    """Seconds of audio the WAV header promises beyond the end of ``data``; None if unknown."""
    offset, byte_rate = 12, 0
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = offset + 8
        if chunk_id == b"fmt " and body + 12 <= len(data):
            byte_rate = int.from_bytes(data[body + 8 : body + 12], "little")
        elif chunk_id == b"data":
            # Streaming writers leave 0 or 0xFFFFFFFF when they cannot seek back to fill it in.
            if size in (0, 0xFFFFFFFF) or byte_rate == 0:
                return None
            return max(0, body + size - len(data)) / byte_rate
        offset = body + size + (size & 1)
    return None


def _ogg_last_page_complete(data: bytes) -> bool:
    """Whether the last Ogg page is whole and carries the end-of-stream flag."""
    start = data.rfind(b"OggS")
    header_end = start + 27
    if start < 0 or header_end > len(data):
        return False
    n_segments = data[start + 26]
    if header_end + n_segments > len(data):
        return False
    body = sum(data[header_end : header_end + n_segments])
    end_of_stream = bool(data[start + 5] & 0x04)
    return end_of_stream and header_end + n_segments + body == len(data)


def header_seconds(container: Any, stream: Any, data: bytes) -> float | None:
    """The duration the file's header announces, seconds, or None when it announces none.

    FFmpeg guesses a length from the bit rate for formats without one in the header (raw ADTS,
    MP3 without a Xing/Info/VBRI frame); a guess is no promise, so those give None.
    """
    name = container.format.name
    if name not in _HEADER_DURATION_FORMATS or (name == "mp3" and not _has_mp3_length_tag(data)):
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if "matroska" in container.format.name and container.duration is not None:
        # WebM keeps the length in the segment header (absent in live browser recordings).
        return float(container.duration) / av.time_base
    return None


def _has_mp3_length_tag(data: bytes) -> bool:
    """Whether an MP3 starts with a Xing, Info or VBRI frame (an exact frame count)."""
    start = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for byte in data[6:10]:  # ID3v2 sizes are "syncsafe": 7 bits per byte
            size = (size << 7) | (byte & 0x7F)
        start = 10 + size
    first_frame = data[start : start + 2048]
    return any(tag in first_frame for tag in (b"Xing", b"Info", b"VBRI"))
