"""The local job backend: a worker process that runs queued training jobs in child processes.

``fakevoice worker`` (started by ``make run``) runs :class:`LocalWorker`. Each claimed run trains in
its own child process, so a crash or a kill of one run never takes the worker down, and the
worker heartbeats for its children. If the worker itself is killed, its children die with it
(see :func:`_die_with_worker`), their heartbeats stop, and the next worker marks those runs interrupted and
— unless ``auto_resume`` is off — queues them again to resume from their last completed epoch.

Training runs and tests of models are forked from a fork server (``job_start_method =
"forkserver"``, the default) that the worker starts with the first of them and that imports
torch, fastai and the engine once (:data:`PRELOAD`): every later run reaches its first batch
about 1 s after it is claimed instead of the 5-6 s those imports take in a fresh interpreter
(``spawn``; ``bench/jobs.py``). The server imports only; it never touches CUDA, starts threads or
builds a model, so forking it is safe. It exits once the worker and its runs are gone. Dataset
builds and renders need little of that engine: each starts in a fresh interpreter, and a worker
that only ever runs them never holds the server's memory. While the worker waits on something
slow (the server's imports, a child that takes its time to end), a thread keeps vouching for its
jobs (:meth:`LocalWorker._vouching`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess

from sqlalchemy.orm import Session

from fakevoice import store
from fakevoice.errors import NotFoundError
from fakevoice.processes import die_with_parent
from fakevoice.settings import get_settings
from fakevoice.store.job_queue import stopped_as_asked
from fakevoice.store.records import FINAL_STATUSES, RunKind

logger = logging.getLogger(__name__)

StartContext = ForkServerContext | SpawnContext

# What the fork server imports once, so that a run's process starts with them loaded.
PRELOAD = [
    "fakevoice.jobs.runner",
    "fakevoice.training",  # fastai
    "fakevoice.tracking",
    "fakevoice.models.learners",
    "fakevoice.models.registry",
    "mlflow.tracking",  # experiment tracking (on by default)
]
# Jobs that need the engine the fork server holds (torch and the models; fastai to train); the
# others (dataset builds, renders) import a fraction of it and start in a fresh interpreter in
# about 1 s.
FORKED_KINDS: frozenset[RunKind] = frozenset({"train", "evaluate"})


def new_worker_id(kind: str = "local") -> str:
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def run_process_name(run_id: int) -> str:
    """The name a run's process shows in ``ps`` and ``top`` (Linux keeps 15 bytes of it)."""
    return f"fv-run-{run_id}"[:15]


def _die_with_worker(worker_pid: int, name: str) -> None:
    """Make this run's process die with its worker, and name it.

    ``PR_SET_PDEATHSIG`` covers a spawned child (its parent is the worker). A forked one's parent
    is the fork server, which lives as long as any of its children, so a thread also waits on a
    pidfd of the worker and kills this process the moment the worker is gone.
    """
    die_with_parent(signal.SIGKILL, name)
    if os.getppid() == worker_pid:
        return
    try:
        worker = os.pidfd_open(worker_pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker died while this process started
        return

    def watch() -> None:
        select.select([worker], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="watch-worker", daemon=True).start()


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def exit_message(code: int | None) -> str:
    """What a run's user reads when its training process ended without finishing the run."""
    if code == -signal.SIGKILL:
        return (
            "The training process was killed (signal 9). That is most often the system running "
            "out of memory: lower the batch size, or train on a machine with more memory. "
            "The run's earlier epochs are kept."
        )
    return (
        f"The training process stopped unexpectedly (exit code {code}); "
        "the run's earlier epochs are kept."
    )


def start_context(method: str) -> StartContext:
    """The multiprocessing context a worker starts training runs with; the fork server is started
    now (it imports :data:`PRELOAD`, which the first run forked from it waits for). Without
    pidfds (not Linux 5.3+) a forked run could outlive a killed worker: runs are spawned.
    """
    if method == "forkserver" and _has_pidfd():
        from multiprocessing import forkserver

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        forkserver.ensure_running()
        return context
    return multiprocessing.get_context("spawn")


def _child_main(
    run_id: int, worker_id: str, worker_pid: int, env: dict[str, str], cwd: str
) -> None:
    """Entry of the training child process.

    A forked child has the fork server's environment and directory, fixed when the server
    started; it takes the worker's as they are now, so settings are read as the worker reads them.
    """
    _die_with_worker(worker_pid, run_process_name(run_id))
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    get_settings.cache_clear()
    # Several runs' processes write to one journal: each line says its time and run.
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s run {run_id} %(name)s: %(message)s",
        force=True,
    )
    from fakevoice.jobs.runner import execute_run

    execute_run(run_id, worker_id)


@dataclass
class _Active:
    run_id: int
    process: BaseProcess
    stop_seen: float | None = None  # when the worker first saw the run's stop request (monotonic)


def _ended_here(session: Session, run_id: int, worker_id: str) -> bool:
    """Whether the run ended while this worker held it (its child wrote its final status)."""
    try:
        run = store.get_run_for_worker(session, run_id)
    except NotFoundError:
        return False
    return (
        run.worker_id == worker_id and run.status in FINAL_STATUSES and run.status != "interrupted"
    )


def _end_process(process: BaseProcess, wait: float = 10.0) -> None:
    """Terminate a run's process, killed if it has not ended ``wait`` seconds later."""
    if process.is_alive():
        process.terminate()
        process.join(timeout=wait)
        if process.is_alive():
            process.kill()
    process.join()


def resume_interrupted(run_ids: list[int]) -> list[int]:
    """Queue interrupted runs again, resuming after their last checkpointed epoch.

    This is the worker's automatic resume: the run was counted against its owner's limit when it
    was submitted, so the per-user limit is not checked again.
    """
    from datetime import UTC, datetime

    from fakevoice.jobs.runner import add_notice, run_dir_for

    resumed = []
    for run_id in run_ids:
        with store.session_scope(readonly=True) as session:
            kind = store.get_run_for_worker(session, run_id).kind
        next_epoch = None
        if kind == "train":  # only training runs checkpoint
            from fakevoice.training_checkpoints import load_checkpoint_state

            state = load_checkpoint_state(run_dir_for(run_id))
            next_epoch = state.epoch + 1 if state is not None else None
        with store.session_scope() as session:
            queued = store.resume_interrupted_run(session, run_id, resume_from_epoch=next_epoch)
        if queued:
            resumed.append(run_id)
            logger.info("run %d queued again to resume at epoch %s", run_id, next_epoch or 0)
            if kind != "train":  # a build continues from its markers; a test starts over
                continue
            # Kept with the run: its timings (and its epoch's batches) span two processes.
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            where = f"after epoch {next_epoch}" if next_epoch else "from its first epoch"
            add_notice(run_id, f"Its worker stopped; resumed {where} on {when}.")
    return resumed


class LocalWorker:
    """Claims queued runs and trains each in a child process, up to ``concurrency`` at once."""

    def __init__(self, concurrency: int | None = None, worker_id: str | None = None) -> None:
        settings = get_settings()
        self.concurrency = concurrency or settings.max_concurrent_jobs
        self.worker_id = worker_id or new_worker_id()
        self.poll_seconds = settings.worker_poll_seconds
        self.heartbeat_seconds = settings.heartbeat_seconds
        self.stale_seconds = settings.stale_seconds
        self.stop_grace_seconds = settings.stop_grace_seconds
        self.auto_resume = settings.auto_resume
        self.active: dict[int, _Active] = {}
        self.start_method = settings.job_start_method
        self._contexts: dict[str, StartContext] = {}
        self._stop = threading.Event()
        self._queue_empty = False

    def stop(self) -> None:
        self._stop.set()

    def recover(self) -> list[int]:
        """Mark runs whose worker died as interrupted and, with auto-resume, queue every
        interrupted run again (those of dead workers and those of workers shut down mid-run)."""
        from fakevoice.store.job_queue import list_interrupted_runs

        with store.session_scope() as session:
            orphans = store.mark_orphans_interrupted(session, self.stale_seconds)
            interrupted = list_interrupted_runs(session, backend="local")
            store.forget_old_workers(session)
        if interrupted and self.auto_resume:
            resume_interrupted(interrupted)
        return orphans

    def run(self, *, max_seconds: float | None = None, exit_when_idle: bool = False) -> None:
        """Work until :meth:`stop`, SIGTERM/SIGINT, ``max_seconds``, or (optionally) no work left."""
        store.init_db()
        started = time.monotonic()
        self._install_signal_handlers()
        logger.info("worker %s started (concurrency %d)", self.worker_id, self.concurrency)
        with store.session_scope() as session:
            self._report(session)
        self.recover()
        last_beat = 0.0
        last_recover = time.monotonic()
        try:
            while not self._stop.is_set():
                self._reap()
                self._fill()
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_seconds:
                    self._heartbeat()
                    last_beat = now
                if now - last_recover >= self.stale_seconds / 2:
                    self.recover()
                    last_recover = now
                if max_seconds is not None and now - started > max_seconds:
                    break
                if exit_when_idle and not self.active and self._queue_empty:
                    break
                self._stop.wait(self.poll_seconds)
        finally:
            self._shutdown()

    # --- internals -------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())

    def _fill(self) -> None:
        while len(self.active) < self.concurrency and not self._stop.is_set():
            with store.session_scope() as session:
                run = store.claim_next_queued_run(session, self.worker_id)
            self._queue_empty = run is None
            if run is None:
                return
            method = self.start_method if run.kind in FORKED_KINDS else "spawn"
            if method not in self._contexts:
                self._contexts[method] = start_context(method)
            process = self._contexts[method].Process(
                target=_child_main,
                args=(run.id, self.worker_id, os.getpid(), dict(os.environ), os.getcwd()),
                name=f"fakevoice-run-{run.id}",
            )
            with self._vouching():  # the first fork waits for the server's imports
                process.start()
            self.active[run.id] = _Active(run.id, process)
            logger.info("run %d started in process %s", run.id, process.pid)

    def _report(self, session: Session) -> None:
        """Say that this worker is alive (a queued job's note and ``/health`` read it)."""
        store.worker_seen(
            session,
            self.worker_id,
            backend="local",
            concurrency=self.concurrency,
            running=len(self.active),
        )

    @contextmanager
    def _vouching(self) -> Iterator[None]:
        """Keep saying that this worker and its jobs are alive while the loop waits on something
        that may take longer than the stale time (the fork server's first imports, a child slow
        to end): no other worker takes them meanwhile. Only the heartbeats: what the loop decides
        (stops, jobs taken away) waits for it."""
        done = threading.Event()
        run_ids = list(self.active)

        def beat() -> None:
            while not done.wait(self.heartbeat_seconds):
                try:
                    with store.session_scope() as session:
                        self._report(session)
                        for run_id in run_ids:
                            store.heartbeat(session, run_id, self.worker_id)
                except Exception:  # the loop's own heartbeat reports a lasting problem
                    logger.warning("heartbeat while waiting failed", exc_info=True)

        thread = threading.Thread(target=beat, name="fakevoice-vouching", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _heartbeat(self) -> None:
        """Say this worker is alive, and vouch for each child's run; end a child whose run is no
        longer this worker's (another worker or the store took it: it must not write on) or that
        has not stopped within ``stop_grace_seconds`` of its stop request (stuck: stop is a flag
        the child polls)."""
        now = time.monotonic()
        ended: list[tuple[int, str]] = []
        with store.session_scope() as session:
            self._report(session)
            for run_id, active in list(self.active.items()):
                if not store.heartbeat(session, run_id, self.worker_id):
                    # Ended by its own child (which still uploads, cleans up and exits: _reap's
                    # to collect), or taken from this worker (it must not write on).
                    if not _ended_here(session, run_id, self.worker_id):
                        ended.append((run_id, ""))
                    continue
                if not store.is_stop_requested(session, run_id):
                    continue
                active.stop_seen = active.stop_seen or now
                if now - active.stop_seen > self.stop_grace_seconds:
                    ended.append(
                        (
                            run_id,
                            f"Stopped: it had not ended {self.stop_grace_seconds:g} s after it was "
                            "asked to, so the worker ended its process; the results of its last "
                            "epoch were not written. Resume it to go on.",
                        )
                    )
        for run_id, message in ended:
            process = self.active.pop(run_id).process
            with self._vouching():  # the others' heartbeats go on while this one ends
                _end_process(process)
            if message:
                with store.session_scope() as session:
                    store.set_status(
                        session, run_id, "cancelled", worker_id=self.worker_id, error=message
                    )
                logger.warning(
                    "run %d: stuck after its stop request; its process was ended", run_id
                )
            else:
                logger.warning("run %d is no longer this worker's; its process was ended", run_id)

    def _reap(self) -> None:
        for run_id, active in list(self.active.items()):
            if active.process.is_alive():
                continue
            active.process.join()
            code = active.process.exitcode
            del self.active[run_id]
            message = exit_message(code)
            with store.session_scope() as session:
                # Only changes a run the child left "running" (it crashed or was killed).
                changed = store.set_status(
                    session,
                    run_id,
                    "failed",
                    worker_id=self.worker_id,
                    error=message,
                    if_still_running=True,
                )
            if changed:
                logger.error("run %d: %s", run_id, message)

    def _shutdown(self) -> None:
        """Stop children; their runs are marked interrupted so a later worker resumes them."""
        for run_id, active in list(self.active.items()):
            _end_process(active.process)
            with store.session_scope() as session:
                stopping = store.is_stop_requested(session, run_id)
                store.set_status(
                    session,
                    run_id,
                    "cancelled" if stopping else "interrupted",
                    worker_id=self.worker_id,
                    error=stopped_as_asked("the worker was shut down")
                    if stopping
                    else "The worker was shut down during this run; it resumes when a worker "
                    "starts again.",
                )
        self.active.clear()
        with store.session_scope() as session:
            store.worker_stopped(session, self.worker_id)
        logger.info("worker %s stopped", self.worker_id)
