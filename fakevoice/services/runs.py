"""Training runs as the pages, the API and the CLI use them: submit, follow, stop, resume.

A run is validated here before it is queued (the dataset exists, the selection is not empty, the
epochs are within the server's limit), so a worker only ever receives a spec that can start.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from fakevoice import store
from fakevoice.datasets.manifest import read_manifest
from fakevoice.datasets.noise import noise_sort_key
from fakevoice.errors import (
    ConflictError,
    DatasetError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.services.datasets import dataset_path
from fakevoice.settings import get_settings
from fakevoice.store.records import (
    Actor,
    BatchMetric,
    EpochMetric,
    RunKind,
    RunRecord,
    RunStatus,
    WorkerRecord,
    record_id,
)
from fakevoice.training_data import dataset_feature_spec, select_items
from fakevoice.trainspec import TrainSpec

if TYPE_CHECKING:
    from fakevoice.models.memory import MemoryAdvice


@dataclass(frozen=True)
class RunProgress:
    """A run with the metrics a live panel draws.

    Attributes:
        run: The run record (status, progress, epoch, error...).
        batches: Per-batch training losses after the step the caller already has.
        epochs: Every finished epoch's figures.
    """

    run: RunRecord
    batches: list[BatchMetric]
    epochs: list[EpochMetric]


def selection_counts(
    dataset: str,
    noise_levels: tuple[str, ...] | None = None,
    speakers: tuple[str, ...] | None = None,
    classes: tuple[str, ...] | None = None,
    *,
    actor: Actor | None,
) -> pd.DataFrame:
    """How many spectrograms a selection holds, per speaker (rows) and noise level (columns).

    Raises:
        NotFoundError: Unknown dataset.
        InvalidSpecError: A chosen value does not exist in the dataset.
        DatasetError: The selection is empty.
    """
    spec = TrainSpec(
        dataset=dataset,
        noise_levels=noise_levels or None,
        speakers=speakers or None,
        classes=classes or None,
    )
    frame = select_items(read_manifest(dataset_path(dataset, actor=actor)), spec)
    table = pd.crosstab(frame["speaker"], frame["noise"])
    levels = sorted((str(level) for level in table.columns), key=noise_sort_key)
    table = table[levels]  # in the order the dataset lists them: clean first, then falling SNR
    table.index.name = "speaker"
    table.columns.name = "noise"
    return table


def check_spec(spec: TrainSpec, *, actor: Actor) -> None:
    """Refuse a spec the server will not run for ``actor``, with the reason in words.

    Raises:
        LimitExceededError: More epochs than ``settings.max_epochs``.
        NotFoundError / InvalidSpecError / DatasetError: Unknown dataset or an empty selection.
    """
    limit = get_settings().max_epochs
    if spec.epochs > limit:
        raise LimitExceededError(
            f"This server trains at most {limit} epochs per run; you asked for {spec.epochs}."
        )
    frame = select_items(read_manifest(dataset_path(spec.dataset, actor=actor)), spec)
    classes = set(frame["class"].astype(str))
    if "bonafide" not in classes or len(classes) < 2:
        raise DatasetError(
            "The selection needs human (bonafide) items and at least one generator's items; "
            f"it has only: {', '.join(sorted(classes))}."
        )


def memory_advice(spec: TrainSpec, *, actor: Actor | None) -> MemoryAdvice:
    """How much memory the run will need, set against this machine's.

    A GPU's total memory counts here, since the run may wait in the queue for it. The worker that
    trains it may run elsewhere (Ray, another host): it checks again with its own memory (a GPU's
    free memory, when the run starts) and adds a notice to the run when it will not fit there. A run asking for CUDA on an
    app server without a GPU gets the estimate alone.

    Raises:
        NotFoundError / InvalidSpecError / DatasetError: unknown dataset or architecture.
    """
    import torch

    from fakevoice.models import memory
    from fakevoice.models.registry import device_choice, pick_device

    feature_spec = dataset_feature_spec(dataset_path(spec.dataset, actor=actor))
    shape = memory.input_shape(spec.arch, feature_spec, spec.clip_samples)
    server = get_settings().device
    amp = spec.callbacks.mixed_precision
    if device_choice(spec.device, server) == "cuda" and not torch.cuda.is_available():
        estimate = memory.estimate_training_memory(
            spec.arch, spec.batch_size, shape, mixed_precision=amp
        )
        return memory.MemoryAdvice(estimate, "cuda", None)
    device = pick_device(spec.device, server)
    return memory.advise(spec.arch, spec.batch_size, shape, device, mixed_precision=amp)


def default_run_name(spec: TrainSpec) -> str:
    """The name of a run submitted without one: architecture, dataset and the time (UTC)."""
    return f"{spec.arch}-{spec.dataset}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def submit_run(actor: Actor, name: str, spec: TrainSpec) -> RunRecord:
    """Validate ``spec`` and queue it as a run of ``actor``'s; a worker picks it up.

    Raises:
        ConflictError: The actor already has a run with this name.
        LimitExceededError: Too many epochs, or too many runs queued or running.
        NotFoundError / InvalidSpecError / DatasetError: The spec cannot run on this server.
    """
    check_spec(spec, actor=actor)
    with store.session_scope() as session:
        return store.create_run(
            session, actor, name, spec.to_dict(), backend=get_settings().job_backend
        )


def get_run(actor: Actor, run_id: int) -> RunRecord:
    """One run the actor may see (NotFoundError otherwise)."""
    with store.session_scope(readonly=True) as session:
        return store.get_run(session, actor, run_id)


JOB_KIND_NAMES: dict[RunKind, str] = {
    "train": "a training run",
    "dataset": "a dataset build",
    "evaluate": "a test of models on a dataset",
    "render": "a dataset rendered again",
}


def queue_job(actor: Actor, name: str, spec: dict[str, Any], kind: RunKind) -> RunRecord:
    """Queue a job of ``kind`` (not training) for a worker, named ``name`` or, when the actor
    has a job of that name already, ``name (2)`` and so on.

    Raises:
        LimitExceededError: the actor has too many jobs queued or running.
    """
    with store.session_scope() as session:
        return store.create_run(
            session,
            actor,
            store.unused_run_name(session, actor, name),
            spec,
            backend=get_settings().job_backend,
            kind=kind,
        )


def get_job(actor: Actor, run_id: int, kind: RunKind) -> RunRecord:
    """One job of ``kind`` the actor may see.

    Raises:
        NotFoundError: no such job that the actor may see.
        InvalidSpecError: the job is of another kind.
    """
    run = get_run(actor, run_id)
    if run.kind != kind:
        raise InvalidSpecError(f"Job {run_id} is not {JOB_KIND_NAMES[kind]}.")
    return run


def find_run(actor: Actor, key: str | int) -> RunRecord:
    """A job by name (one of the actor's own, of any kind), else by id (any the actor may see):
    a job called "42" is found by its name.

    Raises:
        NotFoundError: No visible run has that id or name.
    """
    text = str(key).strip()
    with store.session_scope(readonly=True) as session:
        # Any job: `fakevoice stop` also stops builds and tests.
        run = store.find_own_run(session, actor, text)
    if run is not None:
        return run
    if (run_id := record_id(text)) is not None:
        return get_run(actor, run_id)
    raise NotFoundError(f"You have no job called {text!r}; `fakevoice runs --jobs` lists yours.")


def list_runs(
    actor: Actor,
    *,
    all_users: bool = False,
    kind: RunKind | None = "train",
    statuses: tuple[RunStatus, ...] | None = None,
    name: str = "",
    run_ids: Collection[int] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[RunRecord]:
    """The actor's training runs (or jobs of ``kind``; None: every kind), newest first
    (administrators may ask for everyone's); only those in ``statuses``, those whose name holds
    ``name`` (any case) and those of ``run_ids`` when given; one page of them with ``limit``
    (None: all) and ``offset``."""
    with store.session_scope(readonly=True) as session:
        return store.list_runs(
            session,
            actor,
            all_users=all_users,
            kind=kind,
            statuses=statuses,
            name=name,
            run_ids=run_ids,
            limit=limit,
            offset=offset,
        )


def count_runs(
    actor: Actor,
    *,
    all_users: bool = False,
    kind: RunKind | None = "train",
    statuses: tuple[RunStatus, ...] | None = None,
    name: str = "",
) -> int:
    """How many runs :func:`list_runs` lists with the same arguments."""
    with store.session_scope(readonly=True) as session:
        return store.count_runs(
            session, actor, all_users=all_users, kind=kind, statuses=statuses, name=name
        )


def stop_run(actor: Actor, run_id: int) -> RunRecord:
    """Ask a queued or running run to stop (it stops within one batch, keeping its best model).

    A run that has already ended is returned as it is.
    """
    with store.session_scope() as session:
        run = store.get_run(session, actor, run_id)
        if not run.is_active:
            return run
        stopped = store.request_stop(session, actor, run_id)
    if stopped.kind == "dataset" and stopped.status == "cancelled":
        from fakevoice.datasets.uploads import DatasetBuildSpec, remove_upload

        remove_upload(DatasetBuildSpec.from_dict(stopped.spec))  # nobody will build it now
    return stopped


def resume_run(actor: Actor, run_id: int) -> RunRecord:
    """Queue a stopped, failed or interrupted run again, from its last checkpoint when it has one.

    Raises:
        ConflictError: The run is still active or has succeeded.
        LimitExceededError: The actor has too many runs queued or running.
    """
    from fakevoice.jobs.runner import run_dir_for
    from fakevoice.training_checkpoints import load_checkpoint_state

    get_run(actor, run_id)  # visibility first: never look at another user's folder
    state = load_checkpoint_state(run_dir_for(run_id))
    next_epoch = state.epoch + 1 if state is not None else None
    with store.session_scope() as session:
        return store.requeue_run(session, actor, run_id, resume_from_epoch=next_epoch)


def delete_run(actor: Actor, run_id: int) -> RunRecord:
    """Delete a run that is not active, its metrics and its files (models made from it stay)."""
    import shutil

    from fakevoice.jobs.runner import run_dir_for

    with store.session_scope() as session:
        run = store.get_run(session, actor, run_id)
        if run.is_active:
            raise ConflictError(f"Run {run.name!r} is {run.status}; stop it before deleting it.")
        # Any user's: an administrator deleting another's job must not remove their model files.
        models = store.list_models(session, actor, run_id=run_id, all_users=actor.is_admin)
        deleted = store.delete_run(session, actor, run_id)
    if not models:
        shutil.rmtree(run_dir_for(run_id), ignore_errors=True)
    return deleted


def run_model_id(actor: Actor, run_id: int) -> int | None:
    """The id of the model a training run stored (the newest, should it have several) that the
    actor may use; None before it has stored one."""
    with store.session_scope(readonly=True) as session:
        models = store.list_models(session, actor, run_id=run_id)
    return models[0].id if models else None


def run_progress(actor: Actor, run_id: int, *, after_step: int = -1) -> RunProgress:
    """The run with its per-batch losses after ``after_step`` and every epoch's figures."""
    with store.session_scope(readonly=True) as session:
        run = store.get_run(session, actor, run_id)
        batches = store.list_batch_metrics(session, actor, run_id, after_step=after_step)
        epochs = store.list_epoch_metrics(session, actor, run_id)
    return RunProgress(run=run, batches=batches, epochs=epochs)


QUEUED_NOTE_SECONDS = 30.0  # a job queued longer than this gets a word on why it may wait


def worker_note(run: RunRecord, now: datetime | None = None) -> str | None:
    """A sentence when a job waits on a worker: queued while no worker of its backend is alive
    (at once), queued a while behind other jobs, or running without a heartbeat for longer than
    ``stale_seconds`` (its worker may have died; the next worker to look marks it interrupted).
    None otherwise."""
    now = now or datetime.now(UTC)
    stale = get_settings().stale_seconds
    if run.status == "queued":
        # A job is claimed only by workers of the backend it was queued for.
        backend = f" for the {run.backend} backend" if run.backend != "local" else ""
        with store.session_scope(readonly=True) as session:
            alive = store.live_workers(session, stale, backend=run.backend, now=now)
            last = store.last_worker_seen(session, run.backend)
        if not alive:
            gone = (
                "none seen in the last day"
                if last is None
                else f"the last one was seen {_ago(now, last)}"
            )
            return (
                f"No worker{backend} is running ({gone}): it waits until one starts "
                f"(`fakevoice worker` with FAKEVOICE_JOB_BACKEND={run.backend}; `make run` "
                "starts a local one)."
            )
        waited = (now - (run.queued_at or run.created_at)).total_seconds()
        if waited >= QUEUED_NOTE_SECONDS:
            busy = sum(w.running for w in alive)
            room = sum(w.concurrency for w in alive)
            workers = f"{len(alive)} worker{'s' if len(alive) > 1 else ''}{backend}"
            load = f"{workers} running {busy} of at most {room} jobs at once"
            if busy >= room:
                return f"Queued for {duration_text(waited)}: other jobs are ahead of it ({load})."
            return f"Queued for {duration_text(waited)} ({load}): a worker takes it up soon."
    elif run.status == "running":
        heard = run.heartbeat_at or run.started_at
        if heard is not None and (silent := (now - heard).total_seconds()) > stale:
            return (
                f"No word from its worker for {duration_text(silent)}: the worker may have stopped. "
                "A worker that is running (or the next one to start) marks the job interrupted "
                "and resumes it."
            )
    return None


def worker_state(worker: WorkerRecord, now: datetime, stale_seconds: float) -> str:
    """``alive``, ``silent`` (not seen within the stale time: killed, or its machine gone) or
    ``stopped`` (shut down)."""
    if worker.stopped_at is not None:
        return "stopped"
    return "alive" if worker.is_alive(now, stale_seconds) else "silent"


def job_workers(actor: Actor) -> list[tuple[WorkerRecord, str]]:
    """The job workers reported in the last day, most recently seen first, with their state
    (administrators only: they name the server's hosts and processes).

    Raises:
        PermissionDeniedError: the actor is no administrator.
    """
    if not actor.is_admin:
        raise PermissionDeniedError("Only an administrator may see the job workers.")
    now, stale = datetime.now(UTC), get_settings().stale_seconds
    with store.session_scope(readonly=True) as session:
        workers = store.list_workers(session)
    return [(w, worker_state(w, now, stale)) for w in workers]


def _ago(now: datetime, then: datetime) -> str:
    return f"{duration_text(max(0.0, (now - then).total_seconds()))} ago"


def duration_text(seconds: float) -> str:
    """A wait in words: seconds up to 2 min, minutes up to 2 h, then hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} h"


def wait_for_run(
    actor: Actor, run_id: int, *, timeout: float = 3600.0, poll: float = 0.5
) -> RunRecord:
    """Block until the run is no longer queued or running, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        run = get_run(actor, run_id)
        if not run.is_active or time.monotonic() > deadline:
            return run
        time.sleep(poll)
