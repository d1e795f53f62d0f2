"""Progress of the jobs that are not training (dataset builds, tests of models on a dataset), and
how every job ends (:func:`finish_job`).

Such a job reports how far it is after each item; :class:`JobProgress` writes it to the store at
most once a second. The write is also the job's heartbeat, and it checks the stop flag: it raises
:class:`JobStopped` when the owner asked the job to stop, and :class:`JobLost` when the job is no
longer held by this worker (marked interrupted, or deleted).
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

from fakevoice import disk, store
from fakevoice.errors import FakeVoiceError, error_chain
from fakevoice.store.records import RunStatus

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0  # at most one progress write (and stop check) a second


class JobStopped(FakeVoiceError):
    """The owner asked the job to stop."""


class JobLost(FakeVoiceError):
    """The job was taken from this worker (marked interrupted or deleted) while it ran."""


class JobProgress:
    """Writes a job's progress (and heartbeat) and checks its stop flag, at most once a second."""

    def __init__(self, run_id: int, worker_id: str, seconds: float = PROGRESS_SECONDS) -> None:
        self.run_id = run_id
        self.worker_id = worker_id
        self.seconds = seconds
        self._last_write = 0.0

    def report(self, fraction: float, *, step: int = 0, force: bool = False) -> None:
        """Record ``fraction`` (0-1) done and the ``step`` in progress (shown as the job's current
        epoch), unless the last write was under a second ago and ``force`` is false.

        Raises:
            JobLost: the job is no longer held by this worker.
            JobStopped: its owner asked it to stop.
        """
        now = time.monotonic()
        if not force and now - self._last_write < self.seconds:
            return
        self._last_write = now
        with store.session_scope() as session:
            alive = store.record_progress(
                session, self.run_id, self.worker_id, progress=fraction, current_epoch=step
            )
            stop = store.is_stop_requested(session, self.run_id)
        if not alive:
            raise JobLost("This job is no longer held by this worker.")
        if stop:
            raise JobStopped("Stopped on request.")


def finish_job(run_id: int, worker_id: str, status: RunStatus, message: str | None = None) -> str:
    """Move a job this worker holds to its final ``status`` with the user's ``message`` (why it
    failed or stopped), and return the status."""
    with store.session_scope() as session:
        store.set_status(session, run_id, status, worker_id=worker_id, error=message)
    return status


def unexpected_error_text(error: BaseException, what: str, folder: Path | None = None) -> str:
    """The words that end a job on an error not of its user's making (a bug, a full disk). A
    full disk is said to be one, as the library that met it seldom says so: with its free space
    when it is the disk under ``folder`` (where the job writes), else as "a disk" (a full
    ``/tmp`` or shared memory raises the same ``ENOSPC``). The folder's path stays in the log."""
    free = disk.free_bytes(folder)
    if free is not None and free < disk.FULL_DISK_BYTES:
        logger.error("the disk holding %s is full (%d bytes free)", folder, free)
        where = f"the server's disk is full ({free / 2**20:.0f} MiB free)"
    elif disk.says_full(error):
        logger.error("a disk is full under the %s: %s", what, error)
        where = "a disk the server writes to is full"
    elif _loader_worker_died(error):
        return (
            f"The {what} stopped because one of its data-loader processes was killed, most often "
            "by the system running out of memory: train with a smaller batch, or ask the "
            "operator for fewer loader workers (FAKEVOICE_TRAIN_LOADER_WORKERS). Its earlier "
            "epochs are kept; resume it."
        )
    else:
        return f"The {what} stopped because of an internal error ({type(error).__name__}: {error})."
    return (
        f"The {what} stopped because {where}. Once its operator has freed space, resume it "
        "(or start it again)."
    )


def _loader_worker_died(error: BaseException) -> bool:
    """Whether ``error``, or one it came from, is torch's word that a data-loader worker process
    died ("DataLoader worker (pid 123) is killed by signal: Killed", "... exited unexpectedly")."""
    return any("DataLoader worker (pid" in str(cause) for cause in error_chain(error))


def end_on_error(
    run_id: int, worker_id: str, error: Exception, what: str, folder: Path | None = None
) -> str:
    """End a job that raised ``error`` (called in its ``except`` block), and return the status.

    A lost job is left as it is (``interrupted``: another worker holds it now, or nobody); a stop
    is ``cancelled``; a :class:`FakeVoiceError` is ``failed`` with its words; anything else (a
    bug, a full disk) is ``failed`` with its type, and its traceback goes to the log.

    Args:
        what: the job in a word, for the log and the message: "build", "test", "render".
        folder: where the job writes, to tell a full disk (:func:`unexpected_error_text`).
    """
    if isinstance(error, JobLost):
        logger.warning("%s %d: %s", what, run_id, error)
        return "interrupted"
    if isinstance(error, JobStopped):
        return finish_job(run_id, worker_id, "cancelled", "Stopped on request.")
    if isinstance(error, FakeVoiceError):
        return finish_job(run_id, worker_id, "failed", str(error))
    logger.error("%s %d failed:\n%s", what, run_id, traceback.format_exc())
    return finish_job(run_id, worker_id, "failed", unexpected_error_text(error, what, folder))
