"""The disk under the workbench's folders: how much is free, and whether an error was a full one.

A job that runs out of room seldom says so: torch's checkpoint writer reports "unexpected pos",
others wrap the ``ENOSPC`` in their own exception. The jobs use :func:`is_full` to end in words
an operator can act on; ``/health`` reports the free space of the data folder.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# Under this much free space where a job writes, an unexplained error is taken for a full disk,
# and /health calls the data folder's disk full.
FULL_DISK_BYTES = 64 * 2**20


def free_bytes(folder: Path | None) -> int | None:
    """Free bytes on the disk holding ``folder`` (or its nearest existing parent); None when
    it cannot be told."""
    if folder is None:
        return None
    for place in (folder, *folder.parents):
        if place.exists():
            try:
                return shutil.disk_usage(place).free
            except OSError:
                return None
    return None


def is_full(error: BaseException, folder: Path | None = None) -> bool:
    """``error``, or an error it was raised from or while handling, says the disk (or the
    user's quota) is full; or, whatever it says, the disk holding ``folder`` has next to no
    room left."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cause = cause.__cause__ or cause.__context__
    free = free_bytes(folder)
    return free is not None and free < FULL_DISK_BYTES


def writable(folder: Path) -> bool:
    """This process may write in ``folder``, or make it: in its nearest existing parent."""
    for place in (folder, *folder.parents):
        if place.exists():
            return place.is_dir() and os.access(place, os.W_OK | os.X_OK)
    return False
