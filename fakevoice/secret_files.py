"""Secrets the server generates once into its data folder (the sign-in cookie key, the key that
signs verdict reports): created owner-only, shared by processes that start at once, and read back
owner-only."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

logger = logging.getLogger(__name__)


def _write_owner_only(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 and write ``data`` into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def replace(path: Path, data: bytes, what: str) -> None:
    """Put ``data`` in place of the secret file ``path``, owner-only from its first byte (written
    beside it, then renamed over it)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_owner_only(tmp, data)
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
            _write_owner_only(tmp, make)
            try:
                os.link(tmp, path)  # fails when the file exists: the first one wins
                logger.info("generated a new %s in %s", what, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            path.chmod(0o600)
            logger.warning("%s was readable by others (mode %o); made it owner-only", path, mode)
        except OSError:  # a mounted secret (read-only, another owner): its mount decides
            logger.warning("%s is readable by others (mode %o) and cannot be changed", path, mode)
    return path.read_bytes()
