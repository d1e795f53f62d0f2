"""Training runs as users see them: submit, read, list, stop, resume, delete.

A run is also the job record the worker executes (see :mod:`fakevoice.store.job_queue` for the
worker's side). Only the owner and administrators see a run; anyone else gets NotFoundError, so
that ids do not reveal what exists.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from fakevoice.errors import (
    ConflictError,
    InvalidSpecError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
)
from fakevoice.settings import get_settings
from fakevoice.store.db import lower_text
from fakevoice.store.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    STATUS_WORDS,
    Actor,
    RunBackend,
    RunKind,
    RunRecord,
    to_record,
)
from fakevoice.store.tables import RUN_BACKENDS, BatchMetricRow, EpochMetricRow, RunRow, UserRow
from fakevoice.store.tables import utcnow as _utcnow

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 128


def clean_name(name: str, what: str) -> str:
    """``name`` stripped; InvalidSpecError when empty or longer than :data:`MAX_NAME_LENGTH`."""
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidSpecError(f"A {what} name must be 1 to {MAX_NAME_LENGTH} characters long.")
    if has_control_characters(cleaned):
        raise InvalidSpecError(
            f"A {what} name cannot hold control characters (tabs, line ends...)."
        )
    return cleaned


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a control character (NUL, a tab, a line end...): none belongs in a
    name, and PostgreSQL refuses NUL in any text."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def create_run(
    session: Session,
    actor: Actor,
    name: str,
    spec: Mapping[str, Any],
    *,
    backend: RunBackend = "local",
    artefact_dir: str | None = None,
    kind: RunKind = "train",
) -> RunRecord:
    """Queue a new run (a job: training or, with ``kind`` dataset, a dataset build) for ``actor``.

    Args:
        name: unique among the actor's runs.
        spec: the full training spec as JSON-ready data (``TrainSpec.to_dict()``); its
            ``epochs`` becomes ``total_epochs``.
        backend: which job backend executes it.
        kind: what the job does (``train`` or ``dataset``).
        artefact_dir: folder of the run's files, when already known.

    Raises:
        ConflictError: the actor already has a run with this name.
        LimitExceededError: the actor has ``settings.max_concurrent_runs_per_user`` runs queued or
            running.
    """
    name = clean_name(name, "run")
    if backend not in RUN_BACKENDS:
        raise InvalidSpecError(f"backend must be one of {', '.join(RUN_BACKENDS)}; got {backend!r}")
    _lock_user(session, actor.user_id)
    taken = select(RunRow.id).where(RunRow.owner_id == actor.user_id, RunRow.name == name)
    if session.scalar(taken) is not None:
        raise ConflictError(f"You already have a run named {name!r}; choose another name.")
    limit = get_settings().max_concurrent_runs_per_user
    if count_active_runs(session, actor.user_id) >= limit:
        raise _too_many_jobs(limit)
    epochs = spec.get("epochs", 0)
    row = RunRow(
        owner_id=actor.user_id,
        name=name,
        spec=dict(spec),
        status="queued",
        total_epochs=epochs if isinstance(epochs, int) else 0,
        backend=backend,
        artefact_dir=artefact_dir,
        kind=kind,
    )
    session.add(row)
    session.flush()
    logger.info("run %d %r queued for user %d", row.id, name, actor.user_id)
    return to_record(RunRecord, row)


def get_run(session: Session, actor: Actor, run_id: int) -> RunRecord:
    """The run, when ``actor`` owns it or is an administrator; NotFoundError otherwise."""
    return to_record(RunRecord, visible_run_row(session, actor, run_id))


def list_runs(
    session: Session,
    actor: Actor,
    *,
    all_users: bool = False,
    statuses: tuple[str, ...] | None = None,
    kind: RunKind | None = "train",
    name: str = "",
    run_ids: Collection[int] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[RunRecord]:
    """The actor's runs of one kind (training runs unless asked; None: every kind), newest first.

    Args:
        all_users: every user's runs (administrators only; PermissionDeniedError otherwise).
        statuses: only runs in these statuses.
        kind: ``train`` for training runs, ``dataset`` for dataset builds, ``evaluate`` for
            tests of models on a dataset.
        name: only runs whose name holds this text (any case; "" or blanks: every run).
        run_ids: only these runs (those of them the other arguments select).
        limit, offset: one page of them: at most ``limit`` (None: all), after the first
            ``offset``.
    """
    conditions = _run_conditions(actor, all_users, statuses, kind, name)
    if run_ids is not None:
        conditions.append(RunRow.id.in_(run_ids))
    query = (
        select(RunRow)
        .where(*conditions)
        .order_by(RunRow.created_at.desc(), RunRow.id.desc())
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [to_record(RunRecord, row) for row in session.scalars(query)]


def count_runs(
    session: Session,
    actor: Actor,
    *,
    all_users: bool = False,
    statuses: tuple[str, ...] | None = None,
    kind: RunKind | None = "train",
    name: str = "",
) -> int:
    """How many runs :func:`list_runs` lists with the same arguments (for paging)."""
    conditions = _run_conditions(actor, all_users, statuses, kind, name)
    return int(session.scalar(select(func.count(RunRow.id)).where(*conditions)) or 0)


def _run_conditions(
    actor: Actor,
    all_users: bool,
    statuses: tuple[str, ...] | None,
    kind: RunKind | None,
    name: str = "",
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if all_users:
        if not actor.is_admin:
            raise PermissionDeniedError("Only an administrator may list everyone's runs.")
    else:
        conditions.append(RunRow.owner_id == actor.user_id)
    if statuses is not None:
        conditions.append(RunRow.status.in_(statuses))
    if kind is not None:
        conditions.append(RunRow.kind == kind)
    if text := name.replace("\x00", "").strip().lower():  # PostgreSQL text holds no NUL
        conditions.append(lower_text(RunRow.name).contains(text, autoescape=True))
    return conditions


def find_own_run(session: Session, actor: Actor, name: str) -> RunRecord | None:
    """The actor's own job (of any kind) called ``name``, or None: names are unique per owner."""
    query = select(RunRow).where(RunRow.owner_id == actor.user_id, RunRow.name == name)
    row = session.scalar(query)
    return None if row is None else to_record(RunRecord, row)


def unused_run_name(session: Session, actor: Actor, name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``... : the first that none of the actor's jobs (of any
    kind) has. Names are cut to fit :data:`MAX_NAME_LENGTH` with the suffix."""
    base = clean_name(name, "run")
    _lock_user(session, actor.user_id)  # the name stays free until create_run in this session
    taken = set(session.scalars(select(RunRow.name).where(RunRow.owner_id == actor.user_id)))
    candidate, attempt = base, 1
    while candidate in taken:
        attempt += 1
        suffix = f" ({attempt})"
        candidate = base[: MAX_NAME_LENGTH - len(suffix)] + suffix
    return candidate


def active_job_specs(session: Session, kind: RunKind | tuple[RunKind, ...]) -> list[dict[str, Any]]:
    """The specs of every user's queued and running jobs of one kind (or of these kinds).

    Not user-facing (it returns no owner or id): services check with it that a dataset is not in
    use, or that a dataset name is not being made already.
    """
    kinds = (kind,) if isinstance(kind, str) else kind
    query = select(RunRow.spec).where(RunRow.status.in_(ACTIVE_STATUSES), RunRow.kind.in_(kinds))
    return [dict(spec) for spec in session.scalars(query)]


def count_active_runs(session: Session, owner_id: int) -> int:
    """How many of this user's runs are queued or running."""
    query = select(func.count(RunRow.id)).where(
        RunRow.owner_id == owner_id, RunRow.status.in_(ACTIVE_STATUSES)
    )
    return int(session.scalar(query) or 0)


def request_stop(session: Session, actor: Actor, run_id: int) -> RunRecord:
    """Stop a run: a queued run is cancelled at once; a running one gets its stop flag set, which
    the training callback turns into a clean cancel. A finished run is left as it is."""
    row = visible_run_row(session, actor, run_id)
    if row.status == "queued":
        row.status = "cancelled"
        row.finished_at = _utcnow()
    elif row.status == "running":
        row.stop_requested = True
    session.flush()
    logger.info("stop requested for run %d by user %d (%s)", run_id, actor.user_id, row.status)
    return to_record(RunRecord, row)


def requeue_run(
    session: Session, actor: Actor, run_id: int, *, resume_from_epoch: int | None = None
) -> RunRecord:
    """Queue a stopped (failed, cancelled, interrupted) run again.

    Args:
        resume_from_epoch: the first epoch (0-based) to train again, starting from the checkpoint
            saved at the end of the epoch before; None trains from scratch. Metrics of this epoch
            and later are dropped.

    Raises:
        ConflictError: the run is queued, running or succeeded.
        LimitExceededError: as for :func:`create_run`.
    """
    row = visible_run_row(session, actor, run_id)
    if row.status not in FINAL_STATUSES or row.status == "succeeded":
        raise ConflictError(
            f"Run {row.name!r} {STATUS_WORDS[row.status]}; only a stopped, failed or interrupted "
            "run can be resumed."
        )
    _lock_user(session, row.owner_id)
    limit = get_settings().max_concurrent_runs_per_user
    if count_active_runs(session, row.owner_id) >= limit:
        raise _too_many_jobs(limit)
    row.worker_deaths = 0  # resumed by its user: the count of automatic resumes starts again
    requeue_row(session, row, resume_from_epoch)
    return to_record(RunRecord, row)


def requeue_row(session: Session, row: RunRow, resume_from_epoch: int | None) -> None:
    """Put a run's row back in the queue (shared by :func:`requeue_run` and the worker's resume)."""
    first_dropped = resume_from_epoch if resume_from_epoch is not None else 0
    for table in (BatchMetricRow, EpochMetricRow):
        session.execute(delete(table).where(table.run_id == row.id, table.epoch >= first_dropped))
    row.status = "queued"
    row.queued_at = _utcnow()
    row.resume_from_epoch = resume_from_epoch
    row.stop_requested = False
    row.error = None
    row.worker_id = None
    row.heartbeat_at = None
    row.started_at = None
    row.finished_at = None
    session.flush()


def delete_run(session: Session, actor: Actor, run_id: int) -> RunRecord:
    """Delete a run that is not queued or running, with its metrics (rows only: the caller
    removes ``artefact_dir``). Models trained by it stay. Returns the deleted run."""
    row = visible_run_row(session, actor, run_id)
    if row.status in ACTIVE_STATUSES:
        raise ConflictError(f"Run {row.name!r} is {row.status}; stop it before deleting it.")
    run = to_record(RunRecord, row)
    session.delete(row)
    session.flush()
    logger.info("run %d deleted by user %d", run_id, actor.user_id)
    return run


def visible_run_row(session: Session, actor: Actor, run_id: int) -> RunRow:
    """The run's row when ``actor`` may see it (owner or administrator); NotFoundError otherwise."""
    row = session.get(RunRow, run_id)
    if row is None or not actor.can_read(row.owner_id):
        raise NotFoundError(f"There is no run with id {run_id}.")
    return row


def _lock_user(session: Session, user_id: int) -> None:
    # Serialises "count active runs, then insert" per user on PostgreSQL (SQLite sessions already
    # hold the write lock from BEGIN IMMEDIATE); also checks that the user exists.
    if session.scalar(select(UserRow.id).where(UserRow.id == user_id).with_for_update()) is None:
        raise NotFoundError(f"There is no user with id {user_id}.")


def _too_many_jobs(limit: int) -> LimitExceededError:
    """The refusal of a job beyond ``max_concurrent_runs_per_user``."""
    return LimitExceededError(
        f"You already have {limit} jobs (training runs, dataset builds, renders or tests) queued "
        "or running; wait for one to finish or stop one."
    )
