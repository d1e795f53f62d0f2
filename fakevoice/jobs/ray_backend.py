"""The Ray job backend: the same job function as the local worker, run as Ray tasks.

Set ``FAKEVOICE_JOB_BACKEND=ray`` and ``FAKEVOICE_RAY_ADDRESS`` (or ``RAY_ADDRESS``) and start
``fakevoice worker``: it claims runs queued for the Ray backend and submits each as a task that asks
for a GPU when the run wants CUDA. Metrics flow through the shared database exactly as with the local
backend; a stop request is the same flag; a task whose Ray worker dies leaves the run failed with a
message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fakevoice import store
from fakevoice.errors import FakeVoiceError
from fakevoice.jobs.local import new_worker_id, resume_interrupted
from fakevoice.settings import get_settings
from fakevoice.store.job_queue import list_interrupted_runs

logger = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is in requirements.txt
        raise FakeVoiceError("The Ray backend needs the 'ray' package installed.") from None
    return ray


def _remote_execute(run_id: int, worker_id: str, env: dict[str, str]) -> str:
    """Body of the Ray task: adopt the submitter's settings, then run the job function."""
    import os

    os.environ.update(env)
    from fakevoice.settings import get_settings as settings_of_task

    settings_of_task.cache_clear()
    from fakevoice.jobs.runner import execute_run

    return execute_run(run_id, worker_id)


def task_resources(spec: dict[str, Any]) -> dict[str, float]:
    """Ray resources of a run: one GPU when the spec asks for CUDA (or auto, and the operator's
    ``FAKEVOICE_DEVICE`` is cuda, or auto on a GPU cluster:
    tests of models on a dataset, whose spec names no device, too); a dataset build or render
    (``spec["kind"]`` ``"dataset"`` or ``"render"``) is CPU work and never takes a GPU. A
    training run (no ``kind``) asks for a CPU more per data-loader worker when
    ``FAKEVOICE_TRAIN_LOADER_WORKERS`` is a number."""
    if spec.get("kind") in ("dataset", "render"):
        return {"num_gpus": 0.0, "num_cpus": 1.0}
    # A training run's data-loader workers take a core each; 'auto' is decided on the node, by its
    # cores, so only a number the operator set is known here.
    loaders = get_settings().train_loader_workers
    cpus = 1.0 + (loaders if spec.get("kind") is None and isinstance(loaders, int) else 0)
    device = spec.get("device", "auto")
    if device == "auto":  # the operator's FAKEVOICE_DEVICE, which the task is given too
        device = get_settings().device
    if device == "cuda":
        return {"num_gpus": 1.0, "num_cpus": cpus}
    if device == "auto":
        ray = _ray()
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        return {"num_gpus": 1.0 if gpus >= 1 else 0.0, "num_cpus": cpus}
    return {"num_gpus": 0.0, "num_cpus": cpus}


def settings_env(num_gpus: float | None = None) -> dict[str, str]:
    """The settings a Ray task needs to reach the same database and folders.

    A task given ``num_gpus`` 0 (:func:`task_resources`) is told to use the CPU for everything:
    Ray hides no GPU from a task that asked for none, so with the operator's ``auto`` a dataset
    build's HiFi-GAN, a test of a model or a run on a GPU node would take that node's GPU beside
    the task Ray gave it to. A task given one scores clips (a test of a model) where it trains,
    as its resources were decided by ``FAKEVOICE_DEVICE``.
    """
    settings = get_settings()
    env = {
        "FAKEVOICE_DATA_DIR": str(settings.data_dir),
        "FAKEVOICE_DATASET_DIR": str(settings.dataset_dir),
        "FAKEVOICE_DATABASE_URL": settings.resolved_database_url,
        "FAKEVOICE_DEVICE": settings.device,
        "FAKEVOICE_TRAIN_LOADER_WORKERS": str(settings.train_loader_workers),
    }
    if num_gpus is not None:
        device = settings.device if num_gpus >= 1 else "cpu"
        env.update(FAKEVOICE_DEVICE=device, FAKEVOICE_VERDICT_DEVICE=device)
    return env


class RayWorker:
    """Claims runs queued for Ray and supervises their tasks."""

    def __init__(self, address: str | None = None, concurrency: int | None = None) -> None:
        settings = get_settings()
        self.address = address or settings.ray_address
        self.concurrency = concurrency or settings.max_concurrent_jobs
        self.worker_id = new_worker_id("ray")
        self.poll_seconds = settings.worker_poll_seconds
        self.heartbeat_seconds = settings.heartbeat_seconds
        self.stale_seconds = settings.stale_seconds
        self.active: dict[int, Any] = {}
        self._stop = threading.Event()
        self._queue_empty = False

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, max_seconds: float | None = None, exit_when_idle: bool = False) -> None:
        ray = _ray()
        store.init_db()
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(max_retries=0)(_remote_execute)
        started = time.monotonic()
        last_beat = 0.0
        with store.session_scope() as session:
            store.mark_orphans_interrupted(session, self.stale_seconds)
            interrupted = list_interrupted_runs(session, backend="ray")
            store.forget_old_workers(session)
        if interrupted and get_settings().auto_resume:
            resume_interrupted(interrupted)
        try:
            while not self._stop.is_set():
                self._reap(ray)
                self._fill(remote)
                now = time.monotonic()
                if now - last_beat >= self.heartbeat_seconds:
                    with store.session_scope() as session:
                        store.worker_seen(
                            session,
                            self.worker_id,
                            backend="ray",
                            concurrency=self.concurrency,
                            running=len(self.active),
                        )
                        for run_id in self.active:
                            store.heartbeat(session, run_id, self.worker_id)
                    last_beat = now
                if max_seconds is not None and now - started > max_seconds:
                    break
                if exit_when_idle and not self.active and self._queue_empty:
                    break
                self._stop.wait(self.poll_seconds)
        finally:
            for ref in self.active.values():
                ray.cancel(ref, force=True)
            for run_id in list(self.active):
                with store.session_scope() as session:
                    store.set_status(
                        session,
                        run_id,
                        "interrupted",
                        worker_id=self.worker_id,
                        error="The Ray worker was shut down during this run.",
                    )
            self.active.clear()
            with store.session_scope() as session:
                store.worker_stopped(session, self.worker_id)

    def _fill(self, remote: Any) -> None:
        while len(self.active) < self.concurrency:
            with store.session_scope() as session:
                run = store.claim_next_queued_run(session, self.worker_id, backend="ray")
            self._queue_empty = run is None
            if run is None:
                return
            options = task_resources(run.spec)
            env = settings_env(options["num_gpus"])
            ref = remote.options(**options).remote(run.id, self.worker_id, env)
            self.active[run.id] = ref
            logger.info("run %d submitted to Ray with %s", run.id, options)

    def _reap(self, ray: Any) -> None:
        if not self.active:
            return
        refs = list(self.active.values())
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for run_id, ref in list(self.active.items()):
            if ref not in done:
                continue
            del self.active[run_id]
            try:
                ray.get(ref)
            except Exception as exc:  # the task died: a killed Ray worker, out of memory...
                message = f"The Ray task running this job failed ({type(exc).__name__}): " + (
                    str(exc).splitlines()[0] if str(exc) else "no details"
                )
                with store.session_scope() as session:
                    store.set_status(
                        session, run_id, "failed", worker_id=self.worker_id, error=message[:500]
                    )
                logger.error("run %d: %s", run_id, message)
