"""The disk under the workbench's folders: how much is free, and whether an error was a full one.

A job that runs out of room seldom says so: torch's checkpoint writer reports "unexpected pos",
others wrap the ``ENOSPC`` in their own exception. The jobs use :func:`says_full` and
:func:`free_bytes` to end in words an operator can act on; ``/health`` reports the free space
of the data folder.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from fakevoice.errors import error_chain

# Under this much free space where a job writes, an unexplained error is taken for a full disk,
# and /health calls the data folder's disk full.
FULL_DISK_BYTES = 64 * 2**20


def _nearest_existing(folder: Path) -> Path | None:
    """``folder``, or its nearest parent that exists (where it would be made)."""
    return next((place for place in (folder, *folder.parents) if place.exists()), None)


def free_bytes(folder: Path | None) -> int | None:
    """Free bytes on the disk holding ``folder`` (or its nearest existing parent); None when
    it cannot be told."""
    place = None if folder is None else _nearest_existing(folder)
    if place is None:
        return None
    try:
        return shutil.disk_usage(place).free
    except OSError:
        return None


def says_full(error: BaseException) -> bool:
    """``error``, or an error it was raised from or while handling, says the disk (or the
    user's quota) is full."""
    return any(
        isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
        for cause in error_chain(error)
    )


def writable(folder: Path) -> bool:
    """This process may write in ``folder``, or make it: in its nearest existing parent."""
    place = _nearest_existing(folder)
    return place is not None and place.is_dir() and os.access(place, os.W_OK | os.X_OK)
