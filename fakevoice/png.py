"""PNG files of spectrogram images: a small encoder (no row filters) and an atomic writer."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from fakevoice.errors import InvalidSamplesError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray) -> bytes:
    """Encode an 8-bit RGB or grey image as PNG bytes (zlib level 1, no row filters).

    Our images are colour-table lookups, so exact colours repeat and deflate finds them without
    PNG's row filters; PIL always chooses filters per row, which here costs about 4x the time and
    gives files about 40% larger.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8.

    Raises:
        InvalidSamplesError: wrong shape or dtype.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (
        (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) and array.size > 0
    ):
        raise InvalidSamplesError(
            f"expected a (H, W, 3) or (H, W) uint8 image; got shape {array.shape} "
            f"dtype {array.dtype}"
        )
    height, width = array.shape[:2]
    rows = np.zeros((height, 1 + array[0].size), dtype=np.uint8)  # leading 0: filter "None"
    rows[:, 1:] = array.reshape(height, -1)
    colour_type = 2 if array.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def save_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB (or grey) uint8 image as PNG atomically, creating parent folders.

    The file appears complete or not at all (temporary file in the same folder, then
    ``os.replace``).

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8.
        path: destination file.

    Raises:
        InvalidSamplesError: wrong shape or dtype.
    """
    data = encode_png(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; images are shared read-only files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
