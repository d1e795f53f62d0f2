"""Ties between processes the kernel keeps: a child that ends when its parent does (Linux)."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


def die_with_parent(sig: signal.Signals = signal.SIGKILL, name: str | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when the thread that started it ends, and
    name the process (``ps``, ``top``; Linux keeps 15 bytes) when ``name`` is given.

    Returns:
        False where the kernel cannot (not Linux): the caller's other ways must do.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig))
        if name is not None:
            libc.prctl(PR_SET_NAME, name.encode()[:15])
    except OSError:
        return False
    return True
