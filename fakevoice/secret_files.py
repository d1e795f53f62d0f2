"""Secrets the server generates once into its data folder (the sign-in cookie key, the key that
signs verdict reports): created owner-only, shared by processes that start at once, and read back
owner-only. Other files only the server's user may read (the SQLite store, the mail outbox) are
written and narrowed with the same two helpers."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)


def write_owner_only(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 and write ``data`` into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def replace(path: Path, data: bytes, what: str) -> None:
    """Put ``data`` in place of the secret file ``path``, owner-only from its first byte (written
    beside it, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_owner_only(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("replaced the %s in %s", what, path)


def read_or_create(path: Path, make: bytes, what: str) -> bytes:
    """The bytes of the secret file ``path``, written first with ``make`` when it does not exist.

    The file is created with mode 0600 and linked into place, so that two processes starting at
    once keep the same secret (the second one's ``make`` is dropped). A file that others may
    read is made owner-only again, with a warning.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            write_owner_only(tmp, make)
            try:
                os.link(tmp, path)  # fails when the file exists: the first one wins
                logger.info("generated a new %s in %s", what, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    keep_owner_only(path)
    return path.read_bytes()


def keep_owner_only(path: Path) -> None:
    """Make the existing file ``path`` owner-only again if others may read it, with a warning; a
    file whose mode cannot be changed (a mounted secret: read-only, another owner) is left as its
    mount made it, with a warning too."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            path.chmod(0o600)
            logger.warning("%s was readable by others (mode %o); made it owner-only", path, mode)
        except OSError:
            logger.warning("%s is readable by others (mode %o) and cannot be changed", path, mode)
