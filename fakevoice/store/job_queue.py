"""The worker's side of runs: claim queued runs, heartbeat, report progress and status, and mark
runs whose worker died as interrupted.

These functions are not user-facing (they take no acting user): only job backends call them. The
claim is one ``UPDATE ... WHERE id = ? AND status = 'queued'`` whose row count says who won, so two
worker processes racing on SQLite or PostgreSQL never run the same job twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from fakevoice.errors import InvalidSpecError, NotFoundError
from fakevoice.store.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RunBackend,
    RunRecord,
    RunStatus,
    to_record,
)
from fakevoice.store.runs import requeue_row
from fakevoice.store.tables import EpochMetricRow, RunRow, utcnow

logger = logging.getLogger(__name__)

MAX_WORKER_DEATHS = 3  # a run whose worker died this often in a row fails, not resumed


def stopped_as_asked(what: str) -> str:
    """The error of a run asked to stop that ended cancelled before its process could write the
    results of its last epoch; ``what`` says what ended it ("its worker stopped responding")."""
    return (
        f"Stopped as asked; {what} before it could write the results of its last epoch. Resume "
        "it to go on."
    )


_CLAIM_CANDIDATES = 8
# Which statuses a run may move to a status from (set_status); "queued" again is requeue_run's.
_ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "running": ("queued",),
    "succeeded": ("running",),
    "failed": ("queued", "running"),
    "cancelled": ("queued", "running"),
    "interrupted": ("running",),
}


def _execute_update(session: Session, statement: Any) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def claim_next_queued_run(
    session: Session, worker_id: str, *, backend: RunBackend = "local"
) -> RunRecord | None:
    """Take the oldest queued run of ``backend`` for ``worker_id``, or None when there is none.

    The run becomes ``running`` with ``started_at`` and ``heartbeat_at`` set to now. Commit the
    session right after (``session_scope`` does) so other workers see the claim.
    """
    while True:
        candidates = session.scalars(
            select(RunRow.id)
            .where(RunRow.status == "queued", RunRow.backend == backend)
            .order_by(RunRow.created_at, RunRow.id)
            .limit(_CLAIM_CANDIDATES)
        ).all()
        if not candidates:
            return None
        for run_id in candidates:
            now = utcnow()
            claimed = _execute_update(
                session,
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "queued")
                .values(
                    status="running",
                    worker_id=worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    stop_requested=False,
                )
                .execution_options(synchronize_session=False),
            )
            if claimed == 1:
                logger.info("worker %s claimed run %d", worker_id, run_id)
                return get_run_for_worker(session, run_id)


def get_run_for_worker(session: Session, run_id: int) -> RunRecord:
    """The run, whoever owns it (job backends only). Raises NotFoundError."""
    row = session.get(RunRow, run_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"There is no run with id {run_id}.")
    return to_record(RunRecord, row)


def heartbeat(session: Session, run_id: int, worker_id: str) -> bool:
    """Record that ``worker_id`` is alive and still running ``run_id``.

    Returns:
        False when the run is no longer running on this worker (e.g. it was marked interrupted);
        the worker should then stop working on it.
    """
    return record_progress(session, run_id, worker_id)


def record_progress(
    session: Session,
    run_id: int,
    worker_id: str,
    *,
    progress: float | None = None,
    current_epoch: int | None = None,
) -> bool:
    """Heartbeat plus progress (0-1, clipped) and the epoch in progress (0-based).

    Returns:
        False when the run is no longer running on this worker.
    """
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = min(max(float(progress), 0.0), 1.0)
    if current_epoch is not None:
        values["current_epoch"] = int(current_epoch)
    count = _execute_update(
        session,
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.worker_id == worker_id, RunRow.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False),
    )
    return count == 1


def is_stop_requested(session: Session, run_id: int) -> bool:
    """Whether the user asked this run to stop (the training callback polls this)."""
    flag = session.scalar(select(RunRow.stop_requested).where(RunRow.id == run_id))
    if flag is None:
        raise NotFoundError(f"There is no run with id {run_id}.")
    return bool(flag)


def set_status(
    session: Session,
    run_id: int,
    status: RunStatus,
    *,
    worker_id: str | None = None,
    error: str | None = None,
    if_still_running: bool = False,
) -> bool:
    """Move a run to ``status`` when the move is allowed from its current status.

    With ``if_still_running`` the call is a safety net (a worker checking on a child that ended):
    finding the run already finished is the normal case and is not logged as a warning.

    Allowed: queued -> running; running -> succeeded | interrupted; queued or running -> failed |
    cancelled. Final statuses set ``finished_at``; succeeded sets ``progress`` to 1.

    Args:
        worker_id: when given, only a run held by this worker changes.
        error: message shown to the user (for failed / interrupted).

    Returns:
        Whether the run changed (False: another status came first, or another worker holds it).
    """
    if status not in _ALLOWED_FROM:
        raise InvalidSpecError(f"A worker cannot set status {status!r}.")
    now = utcnow()
    values: dict[str, Any] = {"status": status}
    if status == "running":
        values.update(started_at=now, heartbeat_at=now)
    if status in FINAL_STATUSES:
        values["finished_at"] = now
    if status == "succeeded":
        values["progress"] = 1.0
    if error is not None:
        values["error"] = error
    conditions = [RunRow.id == run_id, RunRow.status.in_(_ALLOWED_FROM[status])]
    if worker_id is not None:
        conditions.append(RunRow.worker_id == worker_id)
    statement = update(RunRow).where(*conditions).values(**values)
    changed = _execute_update(session, statement.execution_options(synchronize_session=False))
    if changed:
        logger.info("run %d is now %s", run_id, status)
    elif not if_still_running:
        logger.warning("run %d not moved to %s (status changed meanwhile)", run_id, status)
    return changed == 1


def set_run_info(
    session: Session,
    run_id: int,
    *,
    notice: str | None = None,
    mlflow_run_id: str | None = None,
    artefact_dir: str | None = None,
    total_epochs: int | None = None,
) -> None:
    """Set descriptive fields a job learns while running (None leaves a field as it is).

    Args:
        notice: a line for the user, e.g. "trained from scratch: no ImageNet weights offline".
    """
    given = {
        "notice": notice,
        "mlflow_run_id": mlflow_run_id,
        "artefact_dir": artefact_dir,
        "total_epochs": total_epochs,
    }
    values = {name: value for name, value in given.items() if value is not None}
    if not values:
        return
    statement = update(RunRow).where(RunRow.id == run_id).values(**values)
    if _execute_update(session, statement.execution_options(synchronize_session=False)) != 1:
        raise NotFoundError(f"There is no run with id {run_id}.")


def mark_orphans_interrupted(
    session: Session, stale_seconds: float, *, now: datetime | None = None
) -> list[int]:
    """Mark running runs whose worker has not sent a heartbeat for ``stale_seconds`` as
    interrupted, so no run stays "running" forever after its worker died. A run its user had
    asked to stop is ended as cancelled instead: it is not resumed.

    Returns:
        The ids of the runs marked (interrupted or cancelled), in id order.
    """
    cutoff = (now or utcnow()) - timedelta(seconds=stale_seconds)
    stale = and_(
        RunRow.status == "running",
        or_(
            RunRow.heartbeat_at < cutoff,
            and_(RunRow.heartbeat_at.is_(None), RunRow.started_at < cutoff),
        ),
    )
    candidates = session.execute(
        select(RunRow.id, RunRow.stop_requested, RunRow.worker_deaths)
        .where(stale)
        .order_by(RunRow.id)
    ).all()
    silent = f"no heartbeat for over {stale_seconds:g} s"
    marked: list[int] = []
    ended: dict[str, list[int]] = {"interrupted": [], "cancelled": [], "failed": []}
    for run_id, stop_requested, deaths in candidates:
        values: dict[str, Any]
        if stop_requested:
            values = {
                "status": "cancelled",
                "error": stopped_as_asked(f"its worker stopped responding ({silent})"),
            }
        elif deaths + 1 >= MAX_WORKER_DEATHS:
            values = {
                "status": "failed",
                "worker_deaths": deaths + 1,
                "error": f"Its worker stopped responding ({silent}) {deaths + 1} times in a row "
                "without an epoch finishing between (out of memory on the node?), so it is not "
                "resumed again by itself; resume it by hand, with a smaller batch for example.",
            }
        else:
            values = {
                "status": "interrupted",
                "worker_deaths": deaths + 1,
                "error": f"The worker stopped responding ({silent}), so the run was "
                "interrupted; you can resume it.",
            }
        statement = (
            update(RunRow)
            .where(RunRow.id == run_id, stale)
            .values(finished_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        if _execute_update(session, statement) == 1:
            marked.append(run_id)
            ended[values["status"]].append(run_id)
    for status, ids in ended.items():
        if ids:
            logger.warning("runs %s %s: %s", ids, status, silent)
    return marked


def list_interrupted_runs(session: Session, *, backend: RunBackend = "local") -> list[int]:
    """Ids of the interrupted runs of ``backend`` (a worker shut down or died during them)."""
    statement = select(RunRow.id).where(RunRow.status == "interrupted", RunRow.backend == backend)
    return list(session.scalars(statement.order_by(RunRow.id)).all())


def active_job_counts(session: Session) -> dict[tuple[str, str], int]:
    """How many jobs of every user are queued and running, by ``(kind, status)`` (monitoring:
    the queue's depth; it names nobody)."""
    statement = (
        select(RunRow.kind, RunRow.status, func.count(RunRow.id))
        .where(RunRow.status.in_(ACTIVE_STATUSES))
        .group_by(RunRow.kind, RunRow.status)
    )
    return {(kind, status): int(count) for kind, status, count in session.execute(statement)}


def completed_epochs(session: Session, run_id: int) -> int:
    """How many epochs of the run have stored metrics: the epoch (0-based) to resume from."""
    last = session.scalar(
        select(func.max(EpochMetricRow.epoch)).where(EpochMetricRow.run_id == run_id)
    )
    return 0 if last is None else int(last) + 1


def resume_interrupted_run(session: Session, run_id: int, *, resume_from_epoch: int | None) -> bool:
    """Queue an interrupted run again (the worker's automatic resume; no per-user limit, since the
    run was already counted when it was interrupted). See ``requeue_run`` for ``resume_from_epoch``.

    Returns:
        False when the run is not interrupted (any more).
    """
    row = session.get(RunRow, run_id, with_for_update=True, populate_existing=True)
    if row is None or row.status != "interrupted":
        return False
    if row.stop_requested:  # asked to stop before it was interrupted: it ends there
        row.status = "cancelled"
        row.error = stopped_as_asked("it was interrupted")
        session.flush()
        return False
    requeue_row(session, row, resume_from_epoch)
    logger.info("run %d queued again to resume from epoch %s", run_id, resume_from_epoch)
    return True
