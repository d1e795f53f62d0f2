"""Uploaded files and zips of them, opened under limits and read one file at a time.

An upload is a list of ``(client file name, bytes or a binary file)``. :func:`open_files` lists
what it holds without reading it: a file as it is, a zip (judged by its first bytes, never by its
name) as its entries. Each :class:`UploadedFile` is then read in chunks (:meth:`~UploadedFile.
chunks`, :meth:`~UploadedFile.read`, :meth:`~UploadedFile.save`), so a dataset upload of a
gigabyte reaches the disk without ever being whole in memory.

Limits, from the settings or the caller: files per upload, uncompressed bytes per upload (counted
while decompressing, so a header that lies does not help), bytes per zip entry
(``max_upload_bytes``) and a zip's expansion ratio (``batch_max_zip_ratio``: a zip bomb refuses
the whole upload). Entries with absolute or ``..`` paths, symbolic links and encrypted entries are
refused one by one; a damaged zip or entry is an error of its own. Client names are shown, never
used as paths.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

from fakevoice.errors import FileTooLargeError, LimitExceededError

MAX_NAME_LENGTH = 255
CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# Folders that archivers add beside the real files; they hold no audio of the user's.
_ARCHIVE_NOISE = ("__MACOSX/",)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError)

Source = bytes | BinaryIO
"""What an uploaded file arrives as: its bytes, or a binary file that can seek."""


class DamagedFileError(Exception):
    """A file of an upload could not be read; its message says why, in words."""


def display_name(name: str) -> str:
    """A client's file name made safe to show and store: printable, at most 255 characters."""
    text = "".join(c if c.isprintable() else "?" for c in name).strip()
    return (text or "unnamed")[:MAX_NAME_LENGTH]


def is_zip(data: bytes) -> bool:
    """Whether these bytes (or the first bytes of a file) are a zip archive."""
    return data.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC))


class Budget:
    """What is left of an upload's file count and uncompressed bytes."""

    def __init__(self, files: int, total_bytes: int, what: str = "batch") -> None:
        self.what = what
        self.files, self.total_bytes = files, total_bytes
        self.max_files, self.max_bytes = files, total_bytes

    def take(self, size: int, count: int = 1) -> None:
        self.files -= count
        if self.files < 0:
            raise LimitExceededError(
                f"A {self.what} may hold at most {self.max_files} clips; send the rest in "
                "another one."
            )
        self.spend(size)

    def spend(self, size: int) -> None:
        self.total_bytes -= size
        if self.total_bytes < 0:
            raise FileTooLargeError(
                f"The {self.what} expands to more than {mib(self.max_bytes)} of audio; "
                "send it in smaller parts."
            )


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MiB"


@dataclass
class _Expansion:
    """How far one zip has expanded, against what its size allows."""

    name: str
    ratio: float
    allowed: float
    expanded: int = 0

    def add(self, size: int) -> None:
        self.expanded += size
        if self.expanded > self.allowed:
            raise FileTooLargeError(bomb_message(self.name, self.ratio))


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload (a file as it is, or a zip's entry), not read yet.

    Attributes:
        name: the display name (``<zip>/<entry path>`` for an entry).
        path: the entry's path inside its zip (``/``-separated, checked for absolute and ``..``
            parts); None for a file uploaded as it is. For grouping only, never a file path.
        error: why it cannot be used (refused or damaged), None when it can be read.
    """

    name: str
    path: str | None = None
    error: str | None = None
    _chunks: Callable[[], Iterator[bytes]] | None = field(default=None, repr=False)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes in chunks of at most a MiB, counted against the upload's limits.

        Raises:
            DamagedFileError: the entry cannot be decompressed (damaged, an unknown method).
            FileTooLargeError: a limit of the upload was crossed (the whole upload fails).
        """
        if self._chunks is None:
            raise DamagedFileError(self.error or "No data.")
        try:
            yield from self._chunks()
        except NotImplementedError as exc:
            raise DamagedFileError(
                "This file in the zip uses a compression we do not read."
            ) from exc
        except _ZIP_ERRORS as exc:
            raise DamagedFileError("This file in the zip is damaged.") from exc

    def read(self) -> bytes:
        """All the file's bytes (see :meth:`chunks`)."""
        return b"".join(self.chunks())

    def save(self, target: Path) -> int:
        """Write the file to ``target`` chunk by chunk; nothing is left there when it fails.

        Returns:
            The bytes written.

        Raises:
            DamagedFileError, FileTooLargeError: as :meth:`chunks`.
        """
        written = 0
        try:
            with target.open("wb") as out:
                for chunk in self.chunks():
                    out.write(chunk)
                    written += len(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return written


def open_files(
    files: Sequence[tuple[str, Source]],
    *,
    max_files: int,
    max_total_bytes: int,
    max_entry_bytes: int,
    max_zip_ratio: float,
    what: str = "batch",
) -> list[UploadedFile]:
    """The files of an upload, each file as it is and each zip as its entries, none read yet.

    The files must stay open until their entries are read.

    Args:
        files: ``(client file name, bytes or binary file)`` per uploaded file.
        max_files, max_total_bytes: the upload's limits (uncompressed bytes).
        max_entry_bytes: the largest zip entry, uncompressed.
        max_zip_ratio: how many times its own size a zip may expand to.
        what: what the upload is called in messages ("batch", "dataset upload").

    Returns:
        One file per clip, in upload order (zip entries in archive order).

    Raises:
        LimitExceededError: more files than ``max_files``.
        FileTooLargeError: more bytes than ``max_total_bytes`` in the files as they are, or a zip
            whose declared sizes expand more than ``max_zip_ratio`` times (checked again while
            reading).
    """
    budget = Budget(max_files, max_total_bytes, what)
    opened: list[UploadedFile] = []
    for client_name, source in files:
        name = display_name(client_name)
        handle = io.BytesIO(source) if isinstance(source, bytes) else source
        size = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        head = handle.read(4)
        handle.seek(0)
        if is_zip(head):
            opened.extend(_zip_entries(name, handle, size, budget, max_entry_bytes, max_zip_ratio))
        else:
            budget.take(size)
            opened.append(UploadedFile(name, _chunks=partial(_file_chunks, handle)))
    return opened


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        yield chunk


def _zip_entries(
    zip_name: str,
    handle: BinaryIO,
    size: int,
    budget: Budget,
    max_entry_bytes: int,
    max_ratio: float,
) -> list[UploadedFile]:
    try:
        archive = zipfile.ZipFile(handle)
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except _ZIP_ERRORS:
        return [UploadedFile(zip_name, error="This zip archive is damaged and cannot be opened.")]
    infos = [i for i in infos if not i.filename.startswith(_ARCHIVE_NOISE)]
    if len(infos) > budget.files:
        raise LimitExceededError(
            f"The zip {zip_name!r} holds {len(infos)} files; a {budget.what} may hold at most "
            f"{budget.max_files} clips."
        )
    expansion = _Expansion(zip_name, max_ratio, max_ratio * max(size, 1))
    # The declared sizes are checked first (cheap), the real ones while decompressing.
    if sum(i.file_size for i in infos) > expansion.allowed:
        raise FileTooLargeError(bomb_message(zip_name, max_ratio))
    entries: list[UploadedFile] = []
    for info in infos:
        name = display_name(f"{zip_name}/{info.filename}")
        budget.take(0)
        problem = entry_problem(info)
        if problem is not None:
            entries.append(UploadedFile(name, error=problem))
            continue

        def chunks(info: zipfile.ZipInfo = info) -> Iterator[bytes]:
            return _entry_chunks(archive, info, budget, expansion, max_entry_bytes)

        entries.append(UploadedFile(name, path=info.filename.replace("\\", "/"), _chunks=chunks))
    return entries


def _entry_chunks(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    budget: Budget,
    expansion: _Expansion,
    max_entry_bytes: int,
) -> Iterator[bytes]:
    """An entry's bytes, counted against the limits chunk by chunk as they are decompressed."""
    size = 0
    with archive.open(info) as handle:
        while chunk := handle.read(CHUNK):
            size += len(chunk)
            budget.spend(len(chunk))
            if size > max_entry_bytes:
                raise FileTooLargeError(
                    f"The file {info.filename!r} in the zip is larger than {mib(max_entry_bytes)}."
                )
            expansion.add(len(chunk))
            yield chunk


def bomb_message(zip_name: str, ratio: float) -> str:
    return (
        f"The zip {zip_name!r} expands more than {ratio:.0f} times its size and looks like a "
        "zip bomb; it was not opened."
    )


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry is refused, or None when it may be read."""
    name = info.filename.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "Refused: the file's path in the zip is absolute or leaves its folder (..)."
    if stat.S_ISLNK(info.external_attr >> 16):
        return "Refused: the entry is a symbolic link, not an audio file."
    if info.flag_bits & 0x1:
        return "Refused: the file is encrypted in the zip."
    return None
